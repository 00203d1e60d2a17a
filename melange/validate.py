"""Solve → simulate → tighten → re-solve, until the plan holds its SLO in simulation.

Each round solves the MILP, replays the scenario's traffic through the plan in the simulator and
measures SLO attainment per (bucket, GPU type) cell. Cells that miss the target get a lower
`max_rate` (the profile promised more than the fleet delivered) and the problem is solved again.
The answer is the cheapest plan that held.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pandas as pd

from melange.core import Plan, Profile
from melange.optimizer import solve
from melange.scenario import Scenario
from melange.sim import simulate

MIN_CELL_REQUESTS = 20  # fewer requests in a cell say too little to tighten it


@dataclass
class Round:
    """One solve + simulate round."""

    index: int
    plan: Plan
    attainment: float | None  # None when the plan was not simulated
    held: bool
    tightened: list[dict] = field(default_factory=list)  # {bucket, gpu, attainment, old, new}
    summary: dict | None = None


@dataclass
class PlanReport:
    """Every round, and the cheapest plan that held (None if none did)."""

    rounds: list[Round]
    best: Plan | None
    target: float | None

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {
            "target_attainment": self.target,
            "best": None if self.best is None else self.best.to_dict(),
            "rounds": [{"round": r.index, "cost": r.plan.cost, "counts": r.plan.counts,
                        "attainment": r.attainment, "held": r.held, "tightened": r.tightened}
                       for r in self.rounds],
        }


def cell_attainment(records: pd.DataFrame, warmup_s: float = 0.0) -> pd.DataFrame:
    """SLO attainment and request count per (bucket_in, bucket_out, gpu) after warm-up."""
    counted = records[records["arrival_s"] >= warmup_s]
    grouped = counted.groupby(["bucket_in", "bucket_out", "gpu"])["slo_met"]
    return pd.DataFrame({"attainment": grouped.mean(), "requests": grouped.size()}).reset_index()


def tighten(profiles: dict[str, Profile], cells: pd.DataFrame, target: float,
            step: float) -> tuple[dict[str, Profile], list[dict]]:
    """Lower max_rate of every cell that missed `target`, by `step` or more the worse it missed."""
    new = {name: replace(p, max_rate=p.max_rate.copy()) for name, p in profiles.items()}
    changes = []
    for row in cells.itertuples():
        if row.requests < MIN_CELL_REQUESTS or row.attainment >= target:
            continue
        cell = (int(row.bucket_in), int(row.bucket_out))
        old = float(new[row.gpu].max_rate[cell])
        factor = min(step, max(0.5, row.attainment / target))
        new[row.gpu].max_rate[cell] = old * factor
        changes.append({"bucket": list(cell), "gpu": row.gpu, "attainment": round(float(row.attainment), 4),
                        "old": old, "new": old * factor})
    return new, changes


def plan_and_validate(sc: Scenario, *, max_rounds: int = 5, requests: int | None = None,
                      duration_s: float | None = None, seed: int | None = None, step: float = 0.9,
                      on_round: Callable[[Round], None] | None = None) -> PlanReport:
    """The validation loop of the module docstring; without an SLO or step-time models, solve only."""
    missing = untested_gpus(sc)
    profiles = sc.profiles
    rounds: list[Round] = []
    best: Plan | None = None
    sim = sc.simulation
    if requests is None and duration_s is None:  # a bound given by the caller replaces the scenario's
        requests, duration_s = sim.requests, sim.duration_s
    for index in range(1, max_rounds + 1):
        plan = solve(sc.workload, sc.gpus, profiles, sc.solve)
        if missing or sc.slo is None:
            rounds.append(Round(index, plan, None, False))
            if on_round:
                on_round(rounds[-1])
            return PlanReport(rounds, None, sc.slo.attainment if sc.slo else None)
        result = simulate(plan, sc.workload, sc.step_models, sc.engines, sc.slo,
                          requests=requests, duration_s=duration_s,
                          seed=sim.seed if seed is None else seed, router=sim.router, warmup_s=sim.warmup_s)
        attained = float(result.summary["attainment"]["overall"] or 0.0)  # 0 counted: not held
        held = attained >= sc.slo.attainment
        round_ = Round(index, plan, attained, held, summary=result.summary)
        rounds.append(round_)
        if held:
            best = plan  # rounds only tighten, so the first plan that holds is the cheapest
            if on_round:
                on_round(round_)
            break
        profiles, round_.tightened = tighten(profiles, cell_attainment(result.records, sim.warmup_s),
                                             sc.slo.attainment, step)
        if on_round:
            on_round(round_)
        if not round_.tightened:
            break  # nothing left that one cell can explain
    return PlanReport(rounds, best, sc.slo.attainment)


def untested_gpus(sc: Scenario) -> list[str]:
    """GPU types the simulator cannot model (no step-time model in the scenario)."""
    return [g.name for g in sc.gpus if g.name not in sc.step_models]


def why_not_validated(sc: Scenario) -> str | None:
    """Why the loop can only solve this scenario, or None when it can validate."""
    if sc.slo is None:
        return "the scenario has no slo"
    missing = untested_gpus(sc)
    return f"no step-time model for {', '.join(missing)}" if missing else None

