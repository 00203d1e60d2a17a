"""Fleet-consistent capacity: the solver's idea of what one instance carries, held to the fleet.

A profile is measured on one instance fed one bucket; a fleet fed a mix does better or worse
(batching mixes sizes; KV capacity and prefill interference do not add up), by a factor that
depends on the GPU type and on the traffic it gets. So each GPU type's profile is scaled by a
**capacity factor** measured on the fleet, both ways:

1. The router splits traffic by type with the plan's shares, so a type's instances see exactly its
   share: rate Σ_b share_g[b]·r_b, with that mix of buckets. `fit_type` runs that share alone on n
   instances of the type and finds the fewest n that hold (`baselines.smallest_holding`: the
   acceptance rule and the per-bucket floor on the baselines' seeds).
2. The solver's view of the same share is its load L_g = Σ_b share_g[b]·r_b / (max_rate_g[b]·u_g)
   instances. When ceil(L_g) and the fleet's n_g differ by more than 15 % and one instance (the
   **capacity error**, `within`), every cell of the type is scaled by L_g / (n_g − ½): the solver
   then counts n_g for that share (a type that held with one instance is never scaled down: one
   instance says only that its capacity is at least the load).
3. Re-solve with the scaled profiles and repeat (`calibrate`), since the plan's mix moves as the
   factors do, until every type in use is within, or `MAX_ROUNDS`.

Types the plan leaves out get their factor from the whole traffic (their validated single-type
baseline), so a type whose profile undersells it is not left out for that reason.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from melange.core import MelangeError, Plan, Profile
from melange.keys import digest
from melange.optimizer import solve
from melange.optimizer.milp import ceilings
from melange.scenario import Scenario
from melange.validate.baselines import BaselineResult, single_type_plan, smallest_holding
from melange.validate.check import Confirmation, RunSettings, confirm

MAX_ROUNDS = 4  # solve -> fit every type in use -> rescale; the mix settles in two or three
WITHIN_SHARE = 0.15  # a solver count within 15 % ...
WITHIN_INSTANCES = 1  # ... or one instance of the fleet's is "within"

Checks = dict[tuple[str, int], Confirmation]
OnCheck = Callable[[str, int, Confirmation], None]


def within(solver_count: int, fewest: int) -> bool:
    """Whether a solver count agrees with the fleet's fewest (15 % or one instance)."""
    return abs(solver_count - fewest) <= max(WITHIN_INSTANCES, WITHIN_SHARE * fewest)


def capacity_error(solver_count: int, fewest: int) -> float:
    """Solver count ÷ fewest instances that hold (1 = agree; >1 the solver over-counts)."""
    return solver_count / fewest


def loads(sc: Scenario, plan: Plan, profiles: dict[str, Profile]) -> dict[str, float]:
    """Instances of each type the solver's profiles say the plan's shares need (fractional)."""
    rates = sc.workload.bucket_rates() * (1 + sc.solve.headroom)
    util = dict(zip([g.name for g in sc.gpus], ceilings(sc.gpus, sc.solve)))
    out = {}
    for g, share in plan.share.items():
        cap = profiles[g].max_rate * util[g]
        busy = (np.asarray(share) > 0) & (rates > 0)
        out[g] = float(np.sum(np.asarray(share)[busy] * rates[busy] / cap[busy])) if busy.any() else 0.0
    return out


def share_scenario(sc: Scenario, plan: Plan, gpu: str) -> Scenario | None:
    """The scenario of `gpu` alone serving the share of the traffic `plan` sends it (None if none)."""
    from copy import copy

    part = np.asarray(plan.share[gpu]) * sc.workload.bucket_rates()
    rate = float(part.sum())
    if rate <= 0:
        return None
    sub = copy(sc)
    sub.workload = replace(sc.workload, distribution=part / rate, rate=rate)
    sub.gpus = [g for g in sc.gpus if g.name == gpu]
    sub.profiles = {gpu: sc.profiles[gpu]}
    sub.step_models = {gpu: sc.step_models[gpu]}
    sub.engines = {k: v for k, v in sc.engines.items() if k == gpu}
    sub.solve = replace(sc.solve, headroom=0.0)  # the fleet is judged on the traffic itself
    return sub


@dataclass
class TypeFit:
    """One GPU type's share of a plan: what the solver counts and what the fleet needs."""

    gpu: str
    rate: float  # req/s of its share
    load: float  # solver's instances (fractional)
    solver_count: int
    fewest: int | None  # fewest that hold (None: nothing up to the limit held)
    tried: dict[int, bool] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"gpu": self.gpu, "rate": round(self.rate, 6), "load": round(self.load, 6),
                "solver_count": self.solver_count, "fewest": self.fewest,
                "error": None if not self.fewest else round(capacity_error(self.solver_count, self.fewest), 4),
                "tried": {str(n): ok for n, ok in sorted(self.tried.items())}}


class Checker:
    """Confirms a count of one type on a traffic share, once: earlier checks (resume) are reused
    and new ones reported, keyed by a label of the share and the count."""

    def __init__(self, settings: RunSettings, seeds: list[int], known: Checks | None = None,
                 on_check: OnCheck | None = None, progress: Callable[[str], None] | None = None,
                 workers: int = 1) -> None:
        self.settings, self.seeds, self.known = settings, seeds, dict(known or {})
        self.on_check, self.progress, self.workers = on_check, progress, workers

    def held(self, sub: Scenario, gpu: str, label: str, n: int) -> Confirmation:
        """The confirmation of `n` instances of `gpu` serving all of `sub`'s traffic."""
        if (label, n) not in self.known:
            if self.progress:
                self.progress(f"fleet check: {n} × {gpu} on {sub.workload.rate:.4g} req/s")
            # The share's own warm-up and as many counted requests as a run of the whole traffic.
            settings = replace(self.settings, requests=self.settings.expected_counted, duration_s=None,
                               extra_requests=int(np.ceil(sub.workload.rate * self.settings.warmup_s)))
            conf = confirm(sub, single_type_plan(sub, gpu, n), self.seeds, settings, workers=self.workers)
            self.known[(label, n)] = conf
            if self.on_check:
                self.on_check(label, n, conf)
        return self.known[(label, n)]


def share_label(sub: Scenario, gpu: str) -> str:
    """A key for one type's traffic share (its rate and mix), for the check log."""
    return f"{gpu}@{digest([sub.workload.rate, sub.workload.distribution], 12)}"


def fit_type(sc: Scenario, plan: Plan, gpu: str, load: float, checker: Checker) -> TypeFit | None:
    """The fleet's fewest instances of `gpu` for its share of `plan` (module docstring, step 1)."""
    sub = share_scenario(sc, plan, gpu)
    if sub is None:
        return None
    label = share_label(sub, gpu)
    g = sub.gpus[0]
    start = max(1, plan.counts.get(gpu, 1))
    lo, hi = max(1, g.min_count), g.max_count if g.max_count is not None else 4 * start + 8
    tried: dict[int, bool] = {}

    def holds(n: int) -> bool:
        tried[n] = checker.held(sub, gpu, label, n).held
        return tried[n]

    fewest = smallest_holding(holds, start, lo, hi)
    return TypeFit(gpu, sub.workload.rate, load, plan.counts.get(gpu, 0), fewest, tried)


def rescaled(factor: float, load: float, fewest: int | None) -> float:
    """The new factor of a type whose share the solver counts as `load` and the fleet as `fewest`
    (module docstring, step 2)."""
    if fewest is None:
        return factor * 0.5  # nothing up to the limit held: halve and let the plan move
    if fewest == 1:
        return factor * max(1.0, load)
    return factor * load / (fewest - 0.5)


def scaled(profiles: dict[str, Profile], factors: dict[str, float]) -> dict[str, Profile]:
    """Profiles with every cell of a type times its capacity factor."""
    return {g: replace(p, max_rate=p.max_rate * factors.get(g, 1.0)) for g, p in profiles.items()}


@dataclass
class Calibration:
    """Every round of `calibrate`: factors, the plan solved with them, each type's fit."""

    factors: dict[str, float]
    rounds: list[dict] = field(default_factory=list)  # {factors, cost, counts, fits: [TypeFit dict]}

    @property
    def converged(self) -> bool:
        """Whether the last round's types were all within."""
        return bool(self.rounds) and all(f["fewest"] is not None and within(f["solver_count"], f["fewest"])
                                         for f in self.rounds[-1]["fits"])

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"factors": {g: round(f, 6) for g, f in self.factors.items()}, "converged": self.converged,
                "rounds": self.rounds}


def baseline_factors(sc: Scenario, singles: dict[str, BaselineResult]) -> dict[str, float]:
    """Each type's factor from its validated single-type baseline (the whole traffic)."""
    factors = {}
    for g, b in singles.items():
        plan = single_type_plan(sc, g, 1)
        if plan is None or b.count is None:
            continue
        load = loads(sc, plan, sc.profiles)[g]
        factors[g] = rescaled(1.0, load, b.count) if not within(int(np.ceil(load - 1e-9)), b.count) else 1.0
    return factors


def calibrate(sc: Scenario, checker: Checker, factors: dict[str, float] | None = None,
              max_rounds: int = MAX_ROUNDS, progress: Callable[[str], None] | None = None) -> Calibration:
    """Capacity factors that make the solver's counts agree with the fleet (module docstring)."""
    cal = Calibration(dict(factors or {}))
    before = None  # the factors of the last plan that solved
    for index in range(1, max_rounds + 1):
        profiles = scaled(sc.profiles, cal.factors)
        try:
            plan = solve(sc.workload, sc.gpus, profiles, sc.solve)
        except MelangeError:
            if before is None and not factors:
                raise  # the scenario itself cannot be solved: its own message
            cal.factors = before if before is not None else {}  # scaled past a cap: keep what solved
            break
        before = dict(cal.factors)
        if progress:
            progress(f"capacity round {index}: fitting {', '.join(g for g, n in plan.counts.items() if n)}")
        solver_loads = loads(sc, plan, profiles)
        fits = [f for g, n in plan.counts.items() if n > 0
                if (f := fit_type(sc, plan, g, solver_loads[g], checker)) is not None]
        cal.rounds.append({"factors": {g: round(f, 6) for g, f in cal.factors.items()}, "cost": plan.cost,
                           "counts": dict(plan.counts), "fits": [f.to_dict() for f in fits]})
        if all(f.fewest is not None and within(f.solver_count, f.fewest) for f in fits):
            break
        for f in fits:
            if f.fewest is None or not within(f.solver_count, f.fewest):
                cal.factors[f.gpu] = rescaled(cal.factors.get(f.gpu, 1.0), f.load, f.fewest)
    return cal
