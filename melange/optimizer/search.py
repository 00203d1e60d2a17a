"""Proven optima fast: the continuous bound first, a rounded incumbent, the slice MILP only if needed.

For one rate scale and slice factor S:
  1. Solve the continuous model (x real, n integer). Its optimum L bounds every slice factor from
     below, and on large grids the slice optimum usually equals it.
  2. Round its shares onto the 1/S grid, placing leftover slices where capacity is spare; counts
     are the exact ceilings of the loads. If that costs L, it is optimal: done.
  3. Else fix the counts to the continuous optimum's and look for whole slices that fit, on the
     types it uses (a small feasibility MILP): found, it is optimal.
  4. Otherwise the slice MILP, started from the best incumbent (or a given one, e.g. the plan at
     S/2, which is feasible at S) with the row cost >= L, so HiGHS stops when they meet.
Every answer's counts are the exact ceilings of its loads (exact.py); "optimal" is claimed only
when that exact cost meets a bound the solver proved.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import mip
import numpy as np

from melange.core import GpuType, MelangeError, Plan, Profile, SolveOptions, Workload
from melange.optimizer.backend import favour_feasibility, optimize, set_tolerance
from melange.optimizer.exact import ceil_loads, float_loads, shares_of
from melange.optimizer.milp import MAX_SLICE_FACTOR, Problem, build_model, check_servable, make_problem

PROVEN_ABS = 1e-6  # $/h: the solver's absolute gap; a bound within it proves the cost
# Continuous shares are real numbers stored as floats: when the optimum fills every count exactly
# and no nearby vertex leaves room, its loads meet the counts only to float precision (this much).
CONTINUOUS_REL = 1e-12


@dataclass
class Candidate:
    """A placement (slice counts, or shares for continuous) and the exact counts it needs."""

    weights: np.ndarray  # (B, G)
    counts: np.ndarray  # (G,) int

    def cost(self, p: Problem) -> float:
        """$/h of the counts."""
        return float(np.dot(self.counts, p.cost))


def counts_for(p: Problem, weights: np.ndarray) -> np.ndarray | None:
    """Fewest instances that carry `weights` exactly, within min/max counts; None if over a cap."""
    need = np.maximum(ceil_loads(p.rate, p.cap, weights), [g.min_count for g in p.gpus])
    caps = np.array([g.max_count if g.max_count is not None else np.iinfo(np.int64).max for g in p.gpus])
    return None if np.any(need > caps) else need


def round_onto_grid(p: Problem, share: np.ndarray, counts: np.ndarray, S: int) -> Candidate | None:
    """The continuous shares floored onto the 1/S grid; each leftover slice goes where it fits in
    the spare capacity (largest remainder first), else where the extra capacity is cheapest."""
    load = p.slice_load(S)
    want = share * S
    k = np.where(p.cap > 0, np.floor(want + 1e-9), 0).astype(np.int64)
    spare = counts - (k * load).sum(axis=0)
    usable = (p.cap > 0) & np.array([g.max_count != 0 for g in p.gpus])
    for b in np.argsort(-(S - k.sum(axis=1))):
        for _ in range(int(S - k[b].sum())):
            options = np.nonzero(usable[b])[0]
            fit = [g for g in options if spare[g] >= load[b, g] * (1 + 1e-9)]
            if fit:  # where the continuous plan wanted it most
                g = max(fit, key=lambda h: want[b, h] - k[b, h])
            else:  # one more instance, of the cheapest type that can take the slice
                g = min(options, key=lambda h: (p.cost[h] * np.ceil(load[b, h] - spare[h]), load[b, h]))
                spare[g] += np.ceil(load[b, g] - spare[g])
            k[b, g] += 1
            spare[g] -= load[b, g]
    counts = counts_for(p, k)
    return None if counts is None else Candidate(k.astype(float), counts)


def polish(p: Problem, m: mip.Model, n: list, x: dict, counts: np.ndarray) -> np.ndarray | None:
    """Continuous shares that fill their counts exactly cannot be written as floats without
    topping some count by ~1e-16: re-solve the LP with the counts fixed 1e-7 below themselves
    (any nearby vertex will do), so the float shares keep a margin. None if there is no room."""
    bounds = [(v.lb, v.ub) for v in n]
    try:
        for v, c in zip(n, counts):
            v.lb = v.ub = float(c) * (1 - 1e-7)
        status = m.optimize(relax=True)
        return read_solution(p, x, "continuous") if status == mip.OptimizationStatus.OPTIMAL else None
    finally:
        for v, (lb, ub) in zip(n, bounds):
            v.lb, v.ub = lb, ub


def read_solution(p: Problem, x: dict, S: int | str) -> np.ndarray:
    """(B, G) weights from the solver's x: whole slices, or shares rounded to 12 digits (as saved)."""
    w = np.zeros(p.cap.shape)
    for (b, g), var in x.items():
        w[b, g] = max(0.0, var.x or 0.0)
    if S == "continuous":
        return np.round(shares_of(w), 12)
    k = np.rint(w)
    for b in np.nonzero(k.sum(axis=1) != S)[0]:  # integrality slack left a row off by one
        k[b, np.argmax(w[b] - k[b])] += S - k[b].sum()
    return k


def status_name(status: mip.OptimizationStatus) -> str:
    """python-mip's status as a plan status word."""
    return {mip.OptimizationStatus.OPTIMAL: "optimal",
            mip.OptimizationStatus.FEASIBLE: "feasible",
            mip.OptimizationStatus.INFEASIBLE: "infeasible",
            mip.OptimizationStatus.INT_INFEASIBLE: "infeasible"}.get(status, status.name.lower())


@dataclass
class Outcome:
    """One solver run: status, best exact candidate (if any) and a proven lower bound."""

    status: mip.OptimizationStatus
    best: Candidate | None
    bound: float


def run_model(p: Problem, m: mip.Model, n: list, x: dict, S: int | str, limit: float,
              backend: str = "highs") -> Outcome:
    """Optimize a built model at the solver's tolerances; read and exactly repair its answer. If
    the repair had to add instances (a knife edge), solve again at tight tolerances."""
    start = time.perf_counter()
    out = None
    for tight in (False, True):
        set_tolerance(m, backend, tight)
        status = optimize(m, max(limit - (time.perf_counter() - start), 0.05))
        has = status in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE)
        bound = float(m.objective_bound) if has or status == mip.OptimizationStatus.NO_SOLUTION_FOUND else -np.inf
        claimed = float(m.objective_value) if has else np.inf
        best = read_candidate(p, m, n, x, S) if has else None
        out = Outcome(status, best, bound) if out is None or best is not None else out
        if best is None or best.cost(p) <= claimed + PROVEN_ABS or time.perf_counter() - start > limit:
            return out
    return out


def read_candidate(p: Problem, m: mip.Model, n: list, x: dict, S: int | str) -> Candidate | None:
    """The solver's answer with exact counts (None if they would break a cap)."""
    weights = read_solution(p, x, S)
    if S == "continuous":  # an LP's shares fill counts to within float error: keep its counts
        target = np.maximum(np.rint([v.x for v in n]), [g.min_count for g in p.gpus])
        if np.any(ceil_loads(p.rate, p.cap, weights) > target):
            polished = polish(p, m, n, x, target)
            weights = read_solution(p, x, S) if polished is None else polished
            if polished is None and np.all(float_loads(p.rate, p.cap, weights) <= target * (1 + CONTINUOUS_REL)):
                # Fully tight: the exact split is a rational no float pair can hold.
                return Candidate(weights, target.astype(np.int64))
    counts = counts_for(p, weights)
    return None if counts is None else Candidate(weights, counts)


def solve_scaled(p: Problem, S: int | str, limit: float, backend: str = "highs",
                 incumbent: Candidate | None = None, models=None, cont: Outcome | None = None) -> Plan:
    """The cheapest plan for p at slice factor S (steps 1-4 of the module docstring).
    `models(S)` returns (model, n, x, floor_row) to re-use, default: build them here; `cont` is
    step 1's outcome if already known (it does not depend on S)."""
    start = time.perf_counter()
    models = models or (lambda s: (*build_model(p, s, backend), None))

    def left() -> float:
        return limit - (time.perf_counter() - start)

    if not p.buckets:  # no traffic: the plan is the minimum counts
        zero = np.zeros((0, len(p.gpus)))
        return make_plan(p, Candidate(zero, np.array([g.min_count for g in p.gpus])), "optimal", 0.0, S, start)
    if cont is None:
        m, n, x, _ = models("continuous")
        cont = run_model(p, m, n, x, "continuous", left(), backend)
    if cont.status in (mip.OptimizationStatus.INFEASIBLE, mip.OptimizationStatus.INT_INFEASIBLE):
        raise MelangeError(explain_infeasible(p, backend, limit))
    if S == "continuous" or cont.best is None:
        return finish(p, cont.best, cont, S, start, limit)
    rounded = round_onto_grid(p, shares_of(cont.best.weights), cont.best.counts, int(S))
    best = cheapest(p, [rounded, incumbent])
    if best is not None and best.cost(p) <= cont.bound + PROVEN_ABS:
        return make_plan(p, best, "optimal", cont.bound, S, start)
    fitted = fit_counts(p, int(S), cont.best.counts, left() / 2, backend)
    best = cheapest(p, [fitted, best])
    if best is not None and best.cost(p) <= cont.bound + PROVEN_ABS:
        return make_plan(p, best, "optimal", cont.bound, S, start)
    m, n, x, floor = models(S)
    if floor is None:
        m += mip.xsum(c * v for c, v in zip(p.cost, n)) >= cont.bound - PROVEN_ABS, "floor"
    else:
        floor.rhs = cont.bound - PROVEN_ABS
    if best is not None:
        m.start = [(n[g], float(best.counts[g])) for g in range(len(n))] + \
                  [(var, float(best.weights[b, g])) for (b, g), var in x.items()]
    out = run_model(p, m, n, x, S, left(), backend)
    if out.status in (mip.OptimizationStatus.INFEASIBLE, mip.OptimizationStatus.INT_INFEASIBLE):
        raise MelangeError(explain_slices(p, int(S), backend, left()))
    out.best = cheapest(p, [out.best, best])
    out.bound = max(out.bound, cont.bound)
    return finish(p, out.best, out, S, start, limit)


def fit_counts(p: Problem, S: int, counts: np.ndarray, limit: float, backend: str) -> Candidate | None:
    """Whole slices that fit the continuous optimum's counts, on the types it uses: a small
    feasibility MILP (3-7 of 24 types), which found the optimum in every 40x20 case we timed."""
    used = np.nonzero(counts > 0)[0]
    if len(used) == 0 or np.any(p.cap[:, used].max(axis=1) <= 0):
        return None
    gpus = [replace(p.gpus[g], min_count=int(counts[g]), max_count=int(counts[g])) for g in used]
    sub = Problem(p.buckets, p.rate, p.cap[:, used], gpus, p.shape)
    m, n, x = build_model(sub, S, backend)
    favour_feasibility(m, backend)
    found = run_model(sub, m, n, x, S, limit, backend).best
    if found is None:
        return None
    weights = np.zeros(p.cap.shape)
    weights[:, used] = found.weights
    full = counts_for(p, weights)
    return None if full is None else Candidate(weights, full)


def cheapest(p: Problem, candidates: list[Candidate | None]) -> Candidate | None:
    """The lowest-cost candidate that exists."""
    real = [c for c in candidates if c is not None]
    return min(real, key=lambda c: c.cost(p)) if real else None


def finish(p: Problem, best: Candidate | None, out: Outcome, S, start: float, limit: float) -> Plan:
    """A plan with an honest status: optimal only if its exact cost meets the proven bound."""
    if best is None:
        raise MelangeError(f"solver: no plan found within time_limit_s={limit:g} (status {status_name(out.status)})")
    cost = best.cost(p)
    proven = cost <= out.bound + PROVEN_ABS + 1e-9 * cost  # the bound is proven even at a time limit
    return make_plan(p, best, "optimal" if proven else "feasible", out.bound, S, start)


def make_plan(p: Problem, best: Candidate, status: str, bound: float, S, start: float) -> Plan:
    """Lay a candidate back onto the grid as a Plan."""
    names = [g.name for g in p.gpus]
    share = {name: np.zeros(p.shape) for name in names}
    fractions = best.weights if S == "continuous" else best.weights / int(S)  # continuous: already shares
    for b, ij in enumerate(p.buckets):
        for g, name in enumerate(names):
            share[name][ij] = fractions[b, g]
    counts = {name: int(best.counts[g]) for g, name in enumerate(names)}
    cost = float(sum(g.cost * counts[g.name] for g in p.gpus))
    bound = min(bound, cost) if status == "optimal" else bound
    gap = 0.0 if cost <= 0 or status == "optimal" else max(0.0, (cost - bound) / cost)
    return Plan(counts, share, cost, status, float(bound), gap, time.perf_counter() - start, S)


def feasible(p: Problem, S: int | str, backend: str, limit: float) -> bool:
    """Whether the model has any plan (solver's word, within the limit)."""
    m, _, _ = build_model(p, S, backend)
    return optimize(m, max(limit, 0.05)) in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE)


def explain_slices(p: Problem, S: int, backend: str, limit: float) -> str:
    """Infeasible in whole slices but not continuously: name the slice factor that fixes it."""
    larger = next((s for s in (2 * S, 4 * S, 8 * S) if s <= MAX_SLICE_FACTOR and feasible(p, s, backend, limit)), None)
    fix = f"slice factor {larger} finds a plan" if larger else "a larger slice factor or 'continuous' may"
    return (f"infeasible at solver.slice_factor={S} (--slice-factor): whole slices of 1/{S} of a bucket "
            f"do not fit under the availability caps; {fix}")


def explain_infeasible(p: Problem, backend: str, limit: float) -> str:
    """Name the availability caps that make the problem infeasible (even with continuous shares)."""
    capped = [k for k, g in enumerate(p.gpus) if g.max_count is not None]

    def feasible_without(drop: set[int]) -> bool:
        gpus = [GpuType(g.name, g.cost, g.gpus, g.memory_gb, None if k in drop else g.max_count, g.min_count)
                for k, g in enumerate(p.gpus)]
        return feasible(Problem(p.buckets, p.rate, p.cap, gpus, p.shape), "continuous", backend, limit)

    singles = [k for k in capped if feasible_without({k})]
    binding = singles or capped
    caps = ", ".join(f"{p.gpus[k].name} max_count={p.gpus[k].max_count}" for k in binding)
    if not feasible_without(set(capped)):
        return "infeasible: the workload cannot be placed even without availability caps"
    return f"infeasible: availability caps bind ({caps}); raise one of them or lower the rate"


def solve_problem(p: Problem, options: SolveOptions) -> Plan:
    """Solve a Problem; raise MelangeError (naming the cause) when there is no plan."""
    return solve_scaled(p, options.slice_factor, options.time_limit_s, options.backend)


def solve(workload: Workload, gpus: list[GpuType], profiles: dict[str, Profile],
          options: SolveOptions = SolveOptions()) -> Plan:
    """The cheapest plan that serves `workload` on `gpus` (Mélange's ILP)."""
    problem = make_problem(workload, gpus, profiles, options)
    check_servable(problem, workload.grid.label)
    return solve_problem(problem, options)


def baselines(workload: Workload, gpus: list[GpuType], profiles: dict[str, Profile],
              options: SolveOptions = SolveOptions()) -> dict[str, Plan | None]:
    """The same model restricted to each single GPU type; None where that type cannot serve it."""
    out: dict[str, Plan | None] = {}
    for gpu in gpus:
        try:
            out[gpu.name] = solve(workload, [gpu], {gpu.name: profiles[gpu.name]}, options)
        except MelangeError:
            out[gpu.name] = None
    return out
