"""Plan a schedule and hold it in replay: solve, replay, tighten the windows that failed, re-solve.

Each round solves the horizon's MILP with per-window capacity scales (1 to start), replays the
schedule on the tuning seed and, where a judged window failed, lowers that window's scale for
every type serving it: by the ratio of the mean-ITL limit to what was measured when the paper's
averaged SLO missed, else by `TIGHTEN` (`TIGHTEN_UNSTABLE` when the queue grew). The answer is
the cheapest schedule that held in every judged window among all the rounds examined; then
`strategies` replays it on other traffic (another seed, another day) where it was never tuned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from melange.load import Load
from melange.scenario import Scenario
from melange.schedule.milp import Schedule, ScheduleOptions, solve_schedule
from melange.schedule.replay import DEFAULT_WARMUP_S, Replay, fleet_of_schedule, replay
from melange.schedule.strategies import gpus_per_instance

TIGHTEN = 0.9  # a window that missed its target: 10 % less per instance
TIGHTEN_UNSTABLE = 0.8  # a window whose queue grew: 20 % less
MIN_SCALE = 0.05  # below this the profile, not the plan, is wrong


@dataclass
class ScheduleRound:
    """One solve and its replay."""

    index: int
    schedule: Schedule
    replay: Replay
    tightened: list[int] = field(default_factory=list)  # windows whose scale this round lowered


@dataclass
class ScheduleReport:
    """Every round, and the cheapest schedule that held."""

    rounds: list[ScheduleRound]

    @property
    def best(self) -> ScheduleRound | None:
        """The cheapest round whose replay held (None: none did)."""
        held = [r for r in self.rounds if r.replay.held]
        return min(held, key=lambda r: r.schedule.cost) if held else None

    @property
    def last(self) -> ScheduleRound:
        """The last round (the answer when none held)."""
        return self.rounds[-1]


def tighten_factor(row) -> float:
    """How much a failed window's per-instance capacity shrinks (see the module docstring)."""
    reason = str(row["reason"])
    if reason.startswith("unstable"):
        return TIGHTEN_UNSTABLE
    if "mean ITL" in reason and row["mean_itl_ms"]:
        limit = float(reason.split("above ")[1].split(" ms")[0])
        return float(np.clip(limit / row["mean_itl_ms"], TIGHTEN_UNSTABLE, TIGHTEN))
    return TIGHTEN


def plan_schedule(sc: Scenario, load: Load, opts: ScheduleOptions, *, seed: int, rounds: int = 4,
                  parts: int = 1, executor=None, warmup_s: float = DEFAULT_WARMUP_S,
                  on_round: Callable[[ScheduleRound], None] | None = None) -> ScheduleReport:
    """Solve, replay on `seed`, tighten failed windows, up to `rounds` times or until one holds."""
    scale = np.ones((load.windows, len(sc.gpus)))
    done: list[ScheduleRound] = []
    per = gpus_per_instance(sc)
    for index in range(1, rounds + 1):
        s = solve_schedule(load, sc.gpus, sc.profiles, sc.solve, opts, scale)
        run = replay(sc, load, fleet_of_schedule(s, per), seed, parts=parts, executor=executor, warmup_s=warmup_s)
        r = ScheduleRound(index, s, run)
        failed = run.judged[~run.judged["held"]]
        for _, row in failed.iterrows():
            t = int(row["window"])
            scale[t] = np.maximum(scale[t] * tighten_factor(row), MIN_SCALE)
            r.tightened.append(t)
        done.append(r)
        if on_round is not None:
            on_round(r)
        if run.held:
            break
    return ScheduleReport(done)
