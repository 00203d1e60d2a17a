"""Validated single-type baselines: for each GPU type alone, the fewest instances that hold.

The solver's single-type plan gives the starting count; a count is judged exactly as the Mélange
plan is (`check.confirm`: the acceptance rule on fresh seeds and the per-bucket floor). The search
walks down from the solver's count while it holds, or up by doubling while it fails, then bisects,
so the answer held and one instance fewer was seen to fail. Savings are quoted against the
cheapest validated baseline, never against an unchecked solver count.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from melange.core import Plan
from melange.optimizer import baselines as solver_baselines
from melange.scenario import Scenario
from melange.validate.check import Confirmation, RunSettings, confirm, run_settings
from melange.validate.loop import PlanReport

SEARCH_LIMIT = 8  # without a max_count, give up above 4 x the solver's count + this


@dataclass
class BaselineResult:
    """The fewest instances of one GPU type that serve the whole workload and hold."""

    gpu: str
    count: int | None  # None: cannot serve, or nothing up to the limit held
    cost: float | None  # $/h of `count` instances
    solver_count: int | None  # the solver's single-type count (from the profile)
    tried: dict[int, bool] = field(default_factory=dict)  # count -> held
    confirmation: Confirmation | None = None  # of `count`
    reason: str = ""  # why `count` is None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        conf = self.confirmation
        return {"count": self.count, "cost": self.cost, "solver_count": self.solver_count,
                "tried": {str(n): ok for n, ok in sorted(self.tried.items())}, "reason": self.reason,
                "attainment": None if conf is None else conf.attainment,
                "interval": None if conf is None else [round(v, 6) for v in conf.interval],
                "counted": None if conf is None else conf.counted}


def single_type_plan(sc: Scenario, gpu: str, count: int) -> Plan | None:
    """`count` instances of `gpu` serving every bucket; None if its profile cannot serve one."""
    busy = sc.workload.bucket_rates() > 0
    if np.any(busy & (sc.profiles[gpu].max_rate <= 0)):
        return None
    cost = next(g.cost for g in sc.gpus if g.name == gpu)
    return Plan({gpu: count}, {gpu: busy.astype(float)}, count * cost, status="baseline")


def smallest_holding(holds: Callable[[int], bool], start: int, lo: int, hi: int) -> int | None:
    """Smallest n in [lo, hi] with holds(n), for `holds` monotone in n; probes from `start`
    (one fewer first, then steps that double), then bisects."""
    start = min(max(start, lo), hi)
    if holds(start):
        good, step = start, 1
        while good - step >= lo and holds(good - step):
            good, step = good - step, step * 2
        bad = max(good - step, lo - 1)
    else:
        bad, step = start, 1
        while True:
            n = min(bad + step, hi)
            if n == bad:
                return None  # even `hi` failed
            if holds(n):
                good = n
                break
            bad, step = n, step * 2
    while good - bad > 1:
        mid = (good + bad) // 2
        good, bad = (mid, bad) if holds(mid) else (good, mid)
    return good


def confirmation_seeds(tuning_seed: int, runs: int) -> list[int]:
    """The seeds baselines are judged on: the first fresh seeds after the tuning seed."""
    return list(range(tuning_seed + 1, tuning_seed + 1 + runs))


def validated_baselines(sc: Scenario, *, requests: int | None = None, duration_s: float | None = None,
                        seed: int | None = None, confirm_runs: int = 2, gpus: list[str] | None = None,
                        known: dict[tuple[str, int], Confirmation] | None = None,
                        on_check: Callable[[str, int, Confirmation], None] | None = None,
                        progress: Callable[[str], None] | None = None,
                        workers: int = 1) -> dict[str, BaselineResult]:
    """The validated baseline of each GPU type (or of `gpus`), searched as the module says.

    `known`: (gpu, count) -> confirmation from an earlier run with the same inputs (resume);
    `on_check` sees each new check as it finishes; `workers`: processes per check's runs."""
    seed = sc.simulation.seed if seed is None else seed
    settings = run_settings(sc, requests=requests, duration_s=duration_s)
    seeds = confirmation_seeds(seed, confirm_runs)
    solver = solver_baselines(sc.workload, sc.gpus, sc.profiles, sc.solve)
    out = {}
    for g in sc.gpus:
        if gpus is not None and g.name not in gpus:
            continue
        start = solver[g.name]
        out[g.name] = search_baseline(sc, g.name, None if start is None else start.counts[g.name], settings,
                                      seeds, known or {}, on_check, progress, workers)
    return out


def search_baseline(sc: Scenario, gpu: str, start: int | None, settings: RunSettings, seeds: list[int],
                    known: dict[tuple[str, int], Confirmation],
                    on_check: Callable[[str, int, Confirmation], None] | None,
                    progress: Callable[[str], None] | None, workers: int = 1) -> BaselineResult:
    """One GPU type's search (see validated_baselines)."""
    result = BaselineResult(gpu, None, None, start)
    if single_type_plan(sc, gpu, 1) is None or start is None:
        result.reason = "cannot serve every bucket (profile or max_count)"
        return result
    if gpu not in sc.step_models:
        result.reason = "no step-time model to simulate it"
        return result
    g = next(x for x in sc.gpus if x.name == gpu)
    lo, hi = max(1, g.min_count), g.max_count if g.max_count is not None else 4 * start + SEARCH_LIMIT
    checks: dict[int, Confirmation] = {}

    def holds(n: int) -> bool:
        if n not in checks:
            if (gpu, n) in known:
                checks[n] = known[(gpu, n)]
            else:
                if progress:
                    progress(f"baseline {gpu}: trying {n} instances")
                checks[n] = confirm(sc, single_type_plan(sc, gpu, n), seeds, settings, workers=workers)
                if on_check:
                    on_check(gpu, n, checks[n])
        return checks[n].held

    best = smallest_holding(holds, start, lo, hi)
    result.tried = {n: c.held for n, c in checks.items()}
    if best is None:
        result.reason = f"did not hold with up to {hi} instances"
    else:
        result.count, result.cost, result.confirmation = best, single_type_plan(sc, gpu, best).cost, checks[best]
    return result


def trim_plan(sc: Scenario, plan: Plan, *, requests: int | None = None, duration_s: float | None = None,
              seed: int | None = None, confirm_runs: int = 2,
              progress: Callable[[str], None] | None = None) -> tuple[Plan, Confirmation | None, dict]:
    """Fewer instances of a held plan, judged as baselines are (the baselines' seeds): first try
    each type away entirely (its buckets handed to the other types in use, `_without`), largest
    spend first; then, most expensive type first, the fewest instances of that type that keep
    the plan holding (same shares, the other types fixed), by the baselines' own search
    (`smallest_holding`). Returns (plan, its confirmation or None if nothing was dropped,
    {"GPU=n": held} of every count tried).

    So that a comparison is fair: baselines are searched down to the fewest instances that hold,
    and a Mélange plan gets the same search."""
    seed = sc.simulation.seed if seed is None else seed
    settings = run_settings(sc, requests=requests, duration_s=duration_s)
    seeds = confirmation_seeds(seed, confirm_runs)
    cost = {g.name: g.cost for g in sc.gpus}
    counts, held, tried = dict(plan.counts), None, {}
    for gpu in sorted((g for g, n in counts.items() if n > 0), key=lambda g: -counts[g] * cost[g]):
        share = _without(sc, plan, counts, gpu)  # first, a whole type less: its buckets to the others
        if share is None:
            continue
        trial = {**counts, gpu: 0}
        candidate = Plan(trial, share, sum(n * cost[g] for g, n in trial.items()), status="trimmed")
        check = confirm(sc, candidate, seeds, settings)
        tried[f"{gpu}=0"] = check.held
        if check.held:
            counts, plan, held = trial, candidate, (candidate, check)
    for gpu in sorted((g for g, n in counts.items() if n > 0), key=lambda g: -cost[g]):
        busy = bool(np.any(np.asarray(plan.share.get(gpu, 0.0)) > 0))
        found: dict[int, tuple[Plan, Confirmation | None]] = {counts[gpu]: (plan, None)}

        def holds(n: int, gpu: str = gpu) -> bool:
            if n == counts[gpu]:
                return True  # the plan as it stands held
            trial = {**counts, gpu: n}
            candidate = Plan(trial, plan.share, sum(k * cost[g] for g, k in trial.items()), status="trimmed")
            if progress:
                progress(f"trim: trying {n} x {gpu}")
            check = confirm(sc, candidate, seeds, settings)
            tried[f"{gpu}={n}"] = check.held
            found[n] = (candidate, check)
            return check.held

        fewest = smallest_holding(holds, counts[gpu], 1 if busy else 0, counts[gpu])
        if fewest is not None and fewest < counts[gpu]:
            counts = {**counts, gpu: fewest}
            plan, held = found[fewest][0], found[fewest]
    return (plan, None, tried) if held is None else (held[0], held[1], tried)


def _without(sc: Scenario, plan: Plan, counts: dict[str, int], gpu: str) -> dict[str, np.ndarray] | None:
    """The plan's shares with `gpu`'s part of each bucket handed to the other types in use: pro rata
    to their shares there, else to the one that serves the bucket at the lowest $ per req/s.
    None if `gpu` is the only type in use or a bucket it serves has no other taker."""
    others = [g for g, n in counts.items() if n > 0 and g != gpu]
    if not others:
        return None
    cost = {g.name: g.cost for g in sc.gpus}
    mine = np.asarray(plan.share.get(gpu, 0.0), dtype=float)
    share = {g: np.array(plan.share.get(g, np.zeros_like(mine)), dtype=float) for g in others}
    rest = sum(share.values())
    for i, j in zip(*np.nonzero(mine > 0)):
        if rest[i, j] > 0:
            for g in others:
                share[g][i, j] += mine[i, j] * share[g][i, j] / rest[i, j]
            continue
        able = [g for g in others if sc.profiles[g].max_rate[i, j] > 0]
        if not able:
            return None
        best = min(able, key=lambda g: cost[g] / sc.profiles[g].max_rate[i, j])
        share[best][i, j] += mine[i, j]
    share[gpu] = np.zeros_like(mine)
    return share


def saving(best: Plan | None, baselines: dict[str, BaselineResult]) -> dict | None:
    """What the Mélange plan saves against the cheapest validated baseline (None if none)."""
    valid = [b for b in baselines.values() if b.count is not None]
    if best is None or not valid:
        return None
    cheapest = min(valid, key=lambda b: b.cost)
    return {"against": cheapest.gpu, "baseline_cost": cheapest.cost, "plan_cost": best.cost,
            "fraction": 1.0 - best.cost / cheapest.cost}


def plan_document(report: PlanReport, baselines: dict[str, BaselineResult] | None) -> dict:
    """plan.json: the plan's own keys at the top level (`simulate --plan` reads it), its
    `validation`, and the validated `baselines` with the `saving` (None when not searched)."""
    return {**report.to_dict(),
            "baselines": None if baselines is None else {g: b.to_dict() for g, b in baselines.items()},
            "saving": None if baselines is None else saving(report.best, baselines)}

