"""One fleet for several services (models × SLO classes): one MILP under shared caps and a budget.

A service is one Mélange problem (its buckets, its instance types, its profiles). Services never
share an instance, so without shared limits the joint optimum is each service's own optimum and
their sum is a proven lower bound. Shared limits couple them:

    caps:    Σ_s Σ_{t of GPU h} gpus[t] · n[s,t] <= cap[h]    (e.g. at most 16 H100s in a region)
    budget:  Σ_s Σ_t cost[t] · n[s,t] <= budget                ($/h)

`solve_joint`:
  1. solves each service alone (search.solve_problem, proven); if their union keeps every cap
     and the budget it is the joint optimum (`method` 'separable');
  2. else builds every service's block (milp.add_block) into one model with the shared rows and
     the floor Σ cost >= the separable bound, with continuous shares first: its optimum L is a
     proven bound for any slice factor. Each service is then solved alone with its counts fixed
     to that optimum's (search.py: exact counts, whole slices); when every one fits, the fleet
     costs L and is optimal (`method` 'joint'). Counts fix the shared rows, so they hold.
  3. otherwise the same model in whole slices, from the floor L (`method` 'joint-sliced').
"optimal" is claimed only when the exact cost meets a proven bound.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace

import mip
import numpy as np

from melange.core import MelangeError, Plan, SolveOptions
from melange.optimizer.backend import new_model, optimize, set_tolerance
from melange.optimizer.milp import Problem, add_block
from melange.optimizer.search import PROVEN_ABS, Candidate, counts_for, make_plan, read_solution, solve_problem


@dataclass(frozen=True)
class Shared:
    """Limits the services share: GPUs per hardware type, and $/h."""

    caps: dict[str, int] = field(default_factory=dict)  # hardware GPU name -> most GPUs
    budget: float | None = None  # $/h
    # per service, per instance type: (hardware GPU name, GPUs per instance)
    hardware: dict[str, dict[str, tuple[str, int]]] = field(default_factory=dict)

    def used(self, counts: dict[str, dict[str, int]]) -> dict[str, int]:
        """GPUs of each capped hardware type that `counts` (service -> type -> n) hold."""
        out = {h: 0 for h in self.caps}
        for s, per in counts.items():
            for t, n in per.items():
                h, k = self.hardware[s][t]
                if h in out:
                    out[h] += k * n
        return out

    def broken(self, counts: dict[str, dict[str, int]], cost: float) -> list[str]:
        """The limits `counts` break, as 'H100: 20 GPUs > cap 16' lines."""
        out = [f"{h}: {n} GPUs > cap {self.caps[h]}" for h, n in self.used(counts).items() if n > self.caps[h]]
        if self.budget is not None and cost > self.budget + 1e-9:
            out.append(f"budget: ${cost:.3f}/h > ${self.budget:g}/h")
        return out


@dataclass
class JointPlan:
    """Plans per service, the fleet's cost and how the answer was proven."""

    plans: dict[str, Plan]
    cost: float
    status: str  # optimal | feasible
    bound: float
    method: str  # separable | joint | joint-sliced | greedy (the start was not beaten in time)
    solve_time_s: float
    separable_cost: float  # sum of each service's own optimum (a lower bound)

    @property
    def gap(self) -> float:
        """(cost − bound) / cost."""
        return 0.0 if self.cost <= 0 else max(0.0, (self.cost - self.bound) / self.cost)

    def counts(self) -> dict[str, dict[str, int]]:
        """service -> type -> instances."""
        return {s: dict(p.counts) for s, p in self.plans.items()}

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"cost": self.cost, "status": self.status, "bound": self.bound, "gap": self.gap,
                "method": self.method, "solve_time_s": self.solve_time_s, "separable_cost": self.separable_cost,
                "plans": {s: p.to_dict() for s, p in self.plans.items()}}


def solve_joint(problems: dict[str, Problem], shared: Shared, options: SolveOptions,
                warm: bool = True) -> JointPlan:
    """The cheapest fleet for every service under the shared limits (module docstring); `warm`:
    start HiGHS from the greedy fleet (`greedy`, which solves one service at a time without it)."""
    start = time.perf_counter()
    check_shared(problems, shared)
    alone = {s: solve_problem(p, options) for s, p in problems.items()}
    bound = sum(p.bound if p.bound is not None else p.cost for p in alone.values())
    cost = sum(p.cost for p in alone.values())
    if not shared.broken({s: p.counts for s, p in alone.items()}, cost):
        status = "optimal" if all(p.status == "optimal" for p in alone.values()) else "feasible"
        return JointPlan(alone, cost, status, bound, "separable", time.perf_counter() - start, cost)

    def left() -> float:
        return options.time_limit_s - (time.perf_counter() - start)

    # A service whose own optimum holds no capped GPU keeps it: it is its cheapest, and takes
    # nothing another service could use (the budget only gains). Only the others are coupled.
    fixed = {s: p for s, p in alone.items() if shared.caps and not any(shared.used({s: p.counts}).values())}
    coupled = {s: p for s, p in problems.items() if s not in fixed}
    spare = Shared(shared.caps, None if shared.budget is None else shared.budget - sum(p.cost for p in fixed.values()),
                   shared.hardware)
    if not coupled or (spare.budget is not None and spare.budget < 0):
        raise MelangeError(explain(problems, shared, cost))  # only the budget binds, and it cannot be met
    floors = {s: p.bound if p.bound is not None else p.cost for s, p in alone.items() if s in coupled}
    bound_coupled = sum(floors.values())
    m, blocks = joint_model(coupled, spare, "continuous", options.backend, bound_coupled, floors)
    first = greedy(coupled, spare, replace(options, time_limit_s=max(left() / 4, 0.05))) if warm else None
    if first is not None:  # HiGHS starts from it: a hard case's time limit never ends worse
        m.start = start_values(coupled, blocks, first, "continuous")
    status = optimize(m, max(left(), 0.05))
    if status in (mip.OptimizationStatus.INFEASIBLE, mip.OptimizationStatus.INT_INFEASIBLE):
        raise MelangeError(explain(problems, shared, cost))
    method, plans = "joint", None
    if status in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE):
        bound_coupled = max(bound_coupled, float(m.objective_bound))
        plans = fixed_counts(coupled, {s: np.rint([v.x for v in blocks[s][0]]) for s in coupled}, options, left)
        if plans is not None and spare.broken({s: q.counts for s, q in plans.items()}, _cost(plans)):
            plans = None  # rounding past a limit by a hair: the sliced model checks exactly
    if first is not None and spare.broken({s: q.counts for s, q in first.items()}, _cost(first)):
        first = None
    if plans is None:  # whole slices do not fit the continuous counts: the sliced model
        method = "joint-sliced"
        m, blocks = joint_model(coupled, spare, options.slice_factor, options.backend, bound_coupled, floors)
        plans, found = _run(m, coupled, blocks, options.slice_factor, left(), options.backend, spare)
        bound_coupled = max(bound_coupled, found)
    if first is not None and (plans is None or _cost(first) < _cost(plans)):
        plans, method = first, "greedy"
    if plans is None:
        raise MelangeError(explain(problems, shared, cost))
    plans = {s: fixed[s] if s in fixed else plans[s] for s in problems}  # in the services' order
    bound = bound_coupled + sum(p.bound if p.bound is not None else p.cost for p in fixed.values())
    total = sum(p.cost for p in plans.values())
    status = "optimal" if total <= bound + PROVEN_ABS + 1e-9 * total else "feasible"
    return JointPlan(plans, total, status, min(bound, total), method, time.perf_counter() - start, cost)


def _cost(plans: dict[str, Plan]) -> float:
    """$/h of plans together."""
    return sum(p.cost for p in plans.values())


def greedy(problems: dict[str, Problem], shared: Shared, options: SolveOptions) -> dict[str, Plan] | None:
    """Services one after another, the costliest first, each the cheapest under what the ones
    before it left of the caps and the budget: a feasible start (None if one finds no room)."""
    start = time.perf_counter()
    caps, budget, plans = dict(shared.caps), shared.budget, {}
    def size(s: str) -> float:  # instances of its fastest type per bucket: the biggest goes first
        p = problems[s]
        return float(np.dot(p.rate, 1.0 / np.maximum(p.cap.max(axis=1), 1e-9)))

    order = sorted(problems, key=lambda s: -size(s))
    for s in order:
        limit = options.time_limit_s - (time.perf_counter() - start)
        if limit <= 0:
            return None
        try:
            plans[s] = solve_joint({s: problems[s]}, Shared(caps, budget, {s: shared.hardware[s]}),
                                   replace(options, time_limit_s=limit), warm=False).plans[s]
        except MelangeError:
            return None
        for h, n in shared.used({s: plans[s].counts}).items():
            caps[h] -= n
        budget = None if budget is None else budget - plans[s].cost
    return {s: plans[s] for s in problems}


def start_values(problems: dict[str, Problem], blocks: dict, plans: dict[str, Plan], S: int | str) -> list:
    """(variable, value) pairs of `plans` in the joint model's blocks (shares, or slices of S)."""
    out = []
    for s, p in problems.items():
        n, x = blocks[s]
        out += [(n[g], float(plans[s].counts[t.name])) for g, t in enumerate(p.gpus)]
        scale = 1 if S == "continuous" else int(S)
        out += [(var, float(plans[s].share[p.gpus[g].name][p.buckets[b]]) * scale) for (b, g), var in x.items()]
    return out


def joint_model(problems: dict[str, Problem], shared: Shared, S: int | str, backend: str, floor: float,
                floors: dict[str, float]):
    """Every service's block in one model with the shared rows and the floors (the fleet's, and
    each service's own optimum: valid cuts that HiGHS's relaxation lacks); returns (model, blocks)."""
    m = new_model(backend, "fleet")
    blocks = {s: add_block(m, p, S, prefix=f"s{k}_") for k, (s, p) in enumerate(problems.items())}
    for k, (s, p) in enumerate(problems.items()):
        m += mip.xsum(t.cost * v for t, v in zip(p.gpus, blocks[s][0])) >= floors[s] - PROVEN_ABS, f"s{k}_floor"
    spend = mip.xsum(p.gpus[g].cost * blocks[s][0][g] for s, p in problems.items() for g in range(len(p.gpus)))
    m.objective = mip.minimize(spend)
    for h, cap in shared.caps.items():
        terms = [(shared.hardware[s][p.gpus[g].name][1], blocks[s][0][g]) for s, p in problems.items()
                 for g in range(len(p.gpus)) if shared.hardware[s][p.gpus[g].name][0] == h]
        if terms:
            m += mip.xsum(k * v for k, v in terms) <= cap, f"cap_{h}"
    if shared.budget is not None:
        m += spend <= shared.budget, "budget"
    m += spend >= floor - PROVEN_ABS, "floor"
    return m, blocks


def fixed_counts(problems: dict[str, Problem], counts: dict[str, np.ndarray], options: SolveOptions,
                 left) -> dict[str, Plan] | None:
    """Each service solved alone with its counts fixed (search.py's proven pipeline); None if one
    does not fit at the slice factor."""
    plans = {}
    for s, p in problems.items():
        gpus = [replace(g, min_count=int(c), max_count=int(c)) for g, c in zip(p.gpus, counts[s])]
        try:
            plans[s] = solve_problem(replace(p, gpus=gpus), replace(options, time_limit_s=max(left(), 0.05)))
        except MelangeError:
            return None
    return plans


def _run(m: mip.Model, problems: dict[str, Problem], blocks: dict, S, limit: float, backend: str,
         shared: Shared) -> tuple[dict[str, Plan] | None, float]:
    """Optimize the joint model; each block read back with exact counts that keep the limits (at
    the solver's tolerance first, then tight if exact counts broke one). Returns (plans, bound)."""
    start = time.perf_counter()
    plans, bound = None, -np.inf
    for tight in (False, True):
        set_tolerance(m, backend, tight)
        status = optimize(m, max(limit - (time.perf_counter() - start), 0.05))
        if status in (mip.OptimizationStatus.INFEASIBLE, mip.OptimizationStatus.INT_INFEASIBLE):
            return None, bound
        bound = max(bound, float(m.objective_bound))
        if status not in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE):
            continue
        plans = {}
        for s, p in problems.items():
            n, x = blocks[s]
            weights = read_solution(p, x, S)
            counts = counts_for(p, weights)
            if counts is None:
                plans = None
                break
            plans[s] = make_plan(p, Candidate(weights, counts), "feasible", -np.inf, S, start)
        if plans is not None and not shared.broken({s: q.counts for s, q in plans.items()},
                                                   sum(q.cost for q in plans.values())):
            return plans, bound
        plans = None
    return plans, bound


def check_shared(problems: dict[str, Problem], shared: Shared) -> None:
    """Every type of every service has its hardware named (a caller's bug otherwise)."""
    for s, p in problems.items():
        missing = [g.name for g in p.gpus if g.name not in shared.hardware.get(s, {})]
        if missing:
            raise MelangeError(f"fleet: service {s}'s type {missing[0]} has no hardware entry")


def explain(problems: dict[str, Problem], shared: Shared, separable: float) -> str:
    """Why no fleet fits: the budget below the cheapest fleet, or the caps."""
    if shared.budget is not None and separable > shared.budget + 1e-9:
        return (f"infeasible: the cheapest fleet without shared caps costs ${separable:.3f}/h, over "
                f"budget ${shared.budget:g}/h")
    caps = ", ".join(f"{h} {c} GPUs" for h, c in shared.caps.items())
    return f"infeasible: the shared caps ({caps}) cannot hold every service's traffic; raise one or lower a rate"
