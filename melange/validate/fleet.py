"""A fleet's plan (several models and SLO classes under shared limits), proven in simulation.

1. **Each service alone**: `plan_cheapest` (calibrated capacity, the loop, trim, holdout): the
   cheapest plan that held for that (model, class), a single GPU type included, with each type's
   count within what the shared caps allow it alone.
2. If those answers together keep every shared cap and the budget, they are the fleet's answer:
   services share no instance, so nothing cheaper holds (`method` 'separable').
3. Otherwise more held plans per service are examined (`method` 'joint'):
   - the joint MILP (optimizer/joint.py) on every service's *calibrated* profiles, under the
     limits; each service's share trimmed and confirmed on its holdout seeds, one more instance
     of its weakest type while it fails and the caps leave room;
   - each service that held a capped GPU, planned again without the capped GPUs, and within what
     the other services' own answers leave of the caps;
   - each model on a static share of every cap, in proportion to what it takes unconstrained
     (the split a fleet without a joint planner uses; `split`).
   Pools share nothing, so any held plans together hold: the answer is the cheapest choice of
   one held plan per service that keeps the limits (`cheapest_within`), never above the split.
Every answer then gets a last check, per service, on 4 x the traffic and seeds 1000 past the
tuning seed (one more instance of its weakest type while it fails and the caps leave room), and
its attainment and goodput (req/s that met the SLO) are the ones reported, per service.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from copy import copy
from dataclasses import dataclass, field
from pathlib import Path

from melange.core import MelangeError, Plan, SolveOptions
from melange.fleet import Fleet, split_caps, sub_fleet, within_caps
from melange.optimizer import make_problem
from melange.optimizer.joint import JointPlan, Shared, solve_joint
from melange.scenario import Scenario
from melange.validate.baselines import trim_plan
from melange.validate.cheapest import calibrated, first_holding, holdout_seeds, plan_cheapest
from melange.validate.check import Confirmation, run_settings
from melange.validate.store import inputs_hash

# The answer's last check: this many times the traffic of a confirmation run, on seeds this far
# past the tuning seed. A 1-H100 interactive pool that held at 99.65 % over 2 x 10,000 requests
# missed 99 % on one of two 40,000-request runs (98.88 %) before this check existed.
LONGER = 4
LONGER_SEEDS = 1000


@dataclass
class ServiceResult:
    """One service's answer and its proof."""

    plan: Plan | None
    confirmation: Confirmation | None
    rate: float

    @property
    def held(self) -> bool:
        """Whether the plan held on fresh traffic."""
        return self.plan is not None and self.confirmation is not None and self.confirmation.held

    @property
    def goodput(self) -> float | None:
        """Req/s that met the SLO: rate × attainment on the fresh seeds."""
        c = self.confirmation
        return None if c is None or c.attainment is None else self.rate * c.attainment

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"held": self.held, "rate": self.rate, "goodput": self.goodput,
                "cost": None if self.plan is None else self.plan.cost,
                "counts": {} if self.plan is None else {g: n for g, n in self.plan.counts.items() if n},
                "confirmation": None if self.confirmation is None else self.confirmation.to_dict()}


@dataclass
class FleetReport:
    """The fleet's answer, each service's proof, and what planning them separately costs."""

    services: dict[str, ServiceResult]
    method: str  # separable | joint | split
    joint: JointPlan | None = None  # the solver's joint plan on calibrated profiles (method 'joint')
    alone: dict[str, ServiceResult] = field(default_factory=dict)  # each planned alone, whole caps
    split: dict[str, ServiceResult] | None = None  # each model alone on its static share of the caps
    split_caps: dict[str, dict[str, int]] | None = None  # model -> hardware -> GPUs
    broken: list[str] = field(default_factory=list)  # limits the alone plans break together
    broken_after: list[str] = field(default_factory=list)  # limits the confirmed plans break (should be none)
    sources: dict[str, str] = field(default_factory=dict)  # service -> which candidate its answer is
    split_error: str = ""  # why a model's static share had no plan
    candidates: dict[str, list] = field(default_factory=dict)  # service -> [(source, result dict)]

    @property
    def held(self) -> bool:
        """Whether every service held, within the shared limits."""
        return all(r.held for r in self.services.values()) and not self.broken_after

    @property
    def cost(self) -> float | None:
        """$/h of the whole fleet (None if a service has no plan)."""
        return _total(self.services)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"held": self.held, "cost": self.cost, "method": self.method, "broken": self.broken,
                "broken_after": self.broken_after, "sources": self.sources, "candidates": self.candidates,
                "services": {s: r.to_dict() for s, r in self.services.items()},
                "alone": {s: r.to_dict() for s, r in self.alone.items()}, "alone_cost": _total(self.alone),
                "split": None if self.split is None else {s: r.to_dict() for s, r in self.split.items()},
                "split_cost": None if self.split is None else _total(self.split), "split_caps": self.split_caps,
                "joint": None if self.joint is None else self.joint.to_dict()}


def _total(results: dict[str, ServiceResult]) -> float | None:
    if not results or any(r.plan is None for r in results.values()):
        return None
    return sum(r.plan.cost for r in results.values())


class Planned:
    """plan_cheapest per scenario, each answer logged as it finishes (`log`, JSON lines keyed by
    the scenario's inputs hash) and read back on a re-run: an interrupted fleet keeps its work.
    A resumed answer has no calibration: the joint MILP then plans that service on its profiles."""

    def __init__(self, log: str | Path | None, opts: dict) -> None:
        self.log, self.opts, self.done = None if log is None else Path(log), opts, {}
        if self.log is not None and self.log.is_file():
            for line in self.log.read_text(encoding="utf-8").splitlines():
                try:
                    d = json.loads(line)
                    self.done[d["key"]] = d
                except (ValueError, KeyError, TypeError):
                    continue  # a line cut short by an interruption: planned again

    def __call__(self, sc: Scenario, progress=None) -> tuple[ServiceResult, object]:
        """(the answer as a ServiceResult, its PlanReport or None when read back)."""
        opts = {k: v for k, v in self.opts.items() if k != "workers"}
        key = inputs_hash(sc, **opts)
        if key in self.done:
            d = self.done[key]
            plan = None if d["plan"] is None else Plan.from_dict(d["plan"])
            conf = None if d["confirmation"] is None else Confirmation.from_dict(d["confirmation"])
            return ServiceResult(plan, conf, sc.workload.rate), None
        report = plan_cheapest(sc, progress=progress, **self.opts)
        result = ServiceResult(report.best, report.validation, sc.workload.rate)
        if self.log is not None:
            line = json.dumps({"key": key, "service": sc.name,
                               "plan": None if report.best is None else report.best.to_dict(),
                               "confirmation": None if report.validation is None else report.validation.to_dict()})
            with open(self.log, "a", encoding="utf-8") as f:  # one whole line per answer, flushed
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
        return result, report


def plan_fleet(fleet: Fleet, *, max_rounds: int = 5, requests: int | None = None, seed: int | None = None,
               confirm_runs: int = 2, workers: int = 1, compare_split: bool = True,
               progress: Callable[[str], None] | None = None, log: str | Path | None = None,
               planned: Planned | None = None) -> FleetReport:
    """Steps 1-4 of the module docstring; `log`: a JSON-lines file of finished per-service answers
    to resume from and append to."""
    opts = {"max_rounds": max_rounds, "requests": requests, "seed": seed, "confirm_runs": confirm_runs,
            "workers": workers}
    planned = planned or Planned(log, opts)
    reports, alone = {}, {}
    for s, sc in fleet.services.items():
        if progress:
            progress(f"{s}: planning alone")
        alone[s], reports[s] = planned(sc, progress and (lambda m, s=s: progress(f"{s}: {m}")))
    plans = {s: r.plan for s, r in alone.items()}
    broken = [] if any(p is None for p in plans.values()) else fleet.shared.broken(
        {s: p.counts for s, p in plans.items()}, sum(p.cost for p in plans.values()))
    if not broken:
        final = confirm_within(fleet, plans, seed, confirm_runs, requests, workers, progress, longer=True)
        return FleetReport(final, "separable", alone=alone)
    if progress:
        progress(f"the alone plans break {'; '.join(broken)}: the joint plan")
    services = {s: replace_profiles(sc, reports[s]) for s, sc in fleet.services.items()}
    joint = solve_joint({s: make_problem(sc.workload, sc.gpus, sc.profiles, sc.solve) for s, sc in services.items()},
                        fleet.shared, _options(fleet))
    results = confirm_within(fleet, joint.plans, seed, confirm_runs, requests, workers, progress)
    report = FleetReport(results, "joint", joint, alone, broken=broken)
    final = {s: r.plan for s, r in results.items()}
    if all(p is not None for p in final.values()):
        report.broken_after = fleet.shared.broken({s: p.counts for s, p in final.items()},
                                                  sum(p.cost for p in final.values()))
    candidates = {s: [("alone", alone[s]), ("joint MILP", results[s])] for s in fleet.services}
    for s, sc in fleet.services.items():  # each service that holds a capped GPU, planned without one
        bare = _without_capped(sc, fleet.shared.hardware[s], set(fleet.shared.caps))
        if bare is not None and any(fleet.shared.used({s: plans[s].counts}).values()):
            if progress:
                progress(f"{s}: planning without {', '.join(fleet.shared.caps)}")
            candidates[s].append((f"without {', '.join(fleet.shared.caps)}", planned(bare)[0]))
    for s, sc in fleet.services.items():  # each within what the others' own answers leave of the caps
        mine = fleet.shared.used({s: plans[s].counts})
        others = fleet.shared.used({t: p.counts for t, p in plans.items() if t != s})
        left = {h: max(cap - others[h], 0) for h, cap in fleet.shared.caps.items()}
        if any(0 < left[h] < mine[h] for h in left):
            if progress:
                progress(f"{s}: planning within what the others leave ({left})")
            room = within_caps(sc, fleet.shared.hardware[s], left)
            candidates[s].append(("within what the others leave", planned(room)[0]))
    if compare_split:
        report.split_caps = split_caps(fleet, plans)
        report.split = {}
        for m in fleet.models():
            sub = sub_fleet(fleet, m, report.split_caps[m])
            for s, sc in sub.services.items():
                sub.services[s] = within_caps(sc, fleet.shared.hardware[s], report.split_caps[m])
            if progress:
                progress(f"{m}: planning on its share of the caps")
            try:
                report.split.update(plan_fleet(sub, compare_split=False, progress=progress, planned=planned,
                                               **opts).services)
            except MelangeError as exc:  # this model's static share cannot serve it: no split plan
                report.split.update({s: ServiceResult(None, None, sub.services[s].workload.rate) for s in sub.services})
                report.split_error = f"{m}: {exc}"
        for s, r in report.split.items():
            candidates[s].append(("split", r))
    chosen, report.sources = cheapest_within(fleet.shared, candidates)
    report.services = confirm_within(fleet, {s: r.plan for s, r in chosen.items()}, seed, confirm_runs, requests,
                                     workers, progress, longer=True)
    report.candidates = {s: [(src, r.to_dict()) for src, r in c] for s, c in candidates.items()}
    final = {s: r.plan for s, r in report.services.items()}
    if all(p is not None for p in final.values()):
        report.broken_after = fleet.shared.broken({s: p.counts for s, p in final.items()},
                                                  sum(p.cost for p in final.values()))
    return report


def cheapest_within(shared: Shared, candidates: dict[str, list[tuple[str, ServiceResult]]]):
    """The cheapest choice of one held plan per service that keeps the shared limits: pools share
    nothing, so any held plans together hold. Returns ({service: result}, {service: source});
    the joint MILP's own results (held or not) when no combination fits."""
    import itertools

    names = list(candidates)
    held = [[(src, r) for src, r in candidates[s] if r.held] for s in names]
    best, best_cost = None, math.inf
    for combo in itertools.product(*held):
        counts = {s: r.plan.counts for s, (_, r) in zip(names, combo)}
        cost = sum(r.plan.cost for _, r in combo)
        if cost < best_cost - 1e-9 and not shared.broken(counts, cost):
            best, best_cost = combo, cost
    if best is None:
        return ({s: dict(candidates[s])["joint MILP"] for s in names}, {s: "joint MILP" for s in names})
    return ({s: r for s, (_, r) in zip(names, best)}, {s: src for s, (src, _) in zip(names, best)})


def _without_capped(sc: Scenario, hardware: dict[str, tuple[str, int]], capped: set[str]) -> Scenario | None:
    """`sc` without its types on capped hardware (None if that leaves nothing)."""
    keep = [g for g in sc.gpus if hardware[g.name][0] not in capped]
    if not keep or len(keep) == len(sc.gpus):
        return None
    out = copy(sc)
    out.gpus = keep
    out.profiles = {g.name: sc.profiles[g.name] for g in keep if g.name in sc.profiles}
    return out


def _options(fleet: Fleet) -> SolveOptions:
    """One set of solver options for the joint model: the first service's (slice factor, limit)."""
    return next(iter(fleet.services.values())).solve


def replace_profiles(sc: Scenario, report) -> Scenario:
    """The service with the profiles its own plan_cheapest calibrated (unchanged without one)."""
    return sc if report is None or report.calibration is None else calibrated(sc, report.calibration)


def confirm_within(fleet: Fleet, plans: dict[str, Plan | None], seed: int | None, confirm_runs: int,
                   requests: int | None, workers: int, progress, *, longer: bool = False) -> dict[str, ServiceResult]:
    """Each service's plan confirmed on its holdout seeds; a failing one gets one more instance of
    its weakest type while the shared caps leave room (services in turn, each using what is left).
    `longer`: the answer's last check instead, untrimmed, on LONGER x the traffic and seeds
    LONGER_SEEDS past the tuning seed, which no step before simulated."""
    out: dict[str, ServiceResult] = {}
    counts = {s: {} if p is None else dict(p.counts) for s, p in plans.items()}
    for s, sc in fleet.services.items():
        if plans[s] is None:
            out[s] = ServiceResult(None, None, sc.workload.rate)
            continue
        used = fleet.shared.used({t: c for t, c in counts.items() if t != s})
        room = within_caps(sc, fleet.shared.hardware[s], {h: cap - used[h] for h, cap in fleet.shared.caps.items()},
                       counts[s])
        tuning = sc.simulation.seed if seed is None else seed
        # The joint MILP's counts rest on capacity calibrated for each service alone: trim them as
        # plan_cheapest trims its mix (fewer only, so the caps still hold), then the holdout check.
        settings = run_settings(sc, requests=requests)
        if longer:
            trimmed, seeds = plans[s], [tuning + LONGER_SEEDS + k for k in range(confirm_runs)]
            settings = (run_settings(sc, requests=LONGER * settings.requests) if settings.requests else
                        run_settings(sc, duration_s=LONGER * settings.duration_s))
        else:
            trimmed, _, _ = trim_plan(room, plans[s], requests=requests, seed=seed, confirm_runs=confirm_runs)
            seeds = holdout_seeds(tuning, confirm_runs)
        others = {t: c for t, c in counts.items() if t != s}

        def fits(c: dict[str, int], s: str = s, others: dict = others) -> bool:
            """Whether one more instance keeps every shared cap (types on one GPU counted together)."""
            return all(n <= fleet.shared.caps[h] for h, n in fleet.shared.used({**others, s: c}).items())

        plan, conf = first_holding(room, [trimmed], settings, seeds, workers=workers, fits=fits,
                                   progress=progress and (lambda m, s=s: progress(f"{s}: {m}")))
        if plan is not None:
            counts[s] = dict(plan.counts)
        out[s] = ServiceResult(plan, conf, sc.workload.rate)
    return out
