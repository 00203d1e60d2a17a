"""Plan a schedule and hold it in replay: solve, replay, tighten the windows that failed, re-solve.

Each round solves the horizon with per-window capacity scales (1 to start), replays the schedule
on the tuning seed (and, once it holds there, on `confirm` more) and, where a judged window
failed, lowers that window's scale for every type serving it: by the ratio of the mean-ITL limit
to what was measured when the paper's averaged SLO missed; by `TIGHTEN_UNSTABLE` when the queue
grew; else by (allowed misses ÷ measured misses)^(1/4), within `TIGHTEST`..`TIGHTEN`. Once a schedule holds, the tightened windows get half of it
back for one more round (the capacity may have been cut further than needed). The answer is the
cheapest schedule that held in every judged window among all the rounds examined; then
`strategies` replays it on other traffic (another seed, another day) where it was never tuned.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from melange.load import Load
from melange.scenario import Scenario
from melange.schedule.decompose import balance, bucket_loads
from melange.schedule.milp import Schedule, ScheduleOptions, capacities, solve_schedule
from melange.schedule.replay import DEFAULT_WARMUP_S, Replay, fleet_of_schedule, replay
from melange.schedule.strategies import gpus_per_instance

TIGHTEN = 0.9  # a window that missed its target by a little: 10 % less per instance
TIGHTEN_UNSTABLE = 0.6  # a window whose queue grew: 40 % less
TIGHTEST = 0.4  # a window far below its target: at most 60 % less in one round
MIN_SCALE = 0.05  # below this the profile, not the plan, is wrong
EDGE = 0.999  # just past the load the window's fleet carries


@dataclass
class ScheduleRound:
    """One solve and its replay."""

    index: int
    schedule: Schedule
    replay: Replay  # the last replay of the round: the one that failed, or the last confirmation
    seed: int = 0  # its seed
    loosened: list[int] = field(default_factory=list)  # windows given half their tightening back after it held
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


def tighten_factor(row, target: float) -> float:
    """How much a failed window's per-instance capacity shrinks (see the module docstring)."""
    reason = str(row["reason"])
    if reason.startswith("unstable"):
        return TIGHTEN_UNSTABLE
    if "mean ITL" in reason and row["mean_itl_ms"]:
        limit = float(reason.split("above ")[1].split(" ms")[0])
        return float(np.clip(limit / row["mean_itl_ms"], TIGHTEN_UNSTABLE, TIGHTEN))
    # Misses fall steeply with capacity but bursts blunt it: (allowed / measured misses)^(1/4),
    # fitted on ServeGen's burst windows (0.58 -> 0.98 took five rounds of 0.75 and 0.9).
    allowed, missed = 1.0 - target, 1.0 - float(row["attainment"])
    if missed <= 0:
        return TIGHTEN
    return float(np.clip((allowed / missed) ** 0.25, TIGHTEST, TIGHTEN))


def window_utilisation(sc: Scenario, load: Load, s: Schedule, t: int, scale: np.ndarray) -> float:
    """Load ÷ capacity of window t's busiest type under the most even split its fleet allows."""
    rates = load.rate[t] * load.distribution[t] * (1.0 + sc.solve.headroom)
    if not (rates > 0).any():
        return 1.0
    _, need = bucket_loads(rates, capacities(sc.gpus, sc.profiles, sc.solve), scale)
    z, _ = balance(need, s.counts[t])
    return float(z) if np.isfinite(z) and z > 0 else 1.0


def plan_schedule(sc: Scenario, load: Load, opts: ScheduleOptions, *, seed: int, rounds: int = 4,
                  parts: int = 1, executor=None, warmup_s: float = DEFAULT_WARMUP_S, confirm: int = 1,
                  on_round: Callable[[ScheduleRound], None] | None = None, on_part=None) -> ScheduleReport:
    """Solve, replay on `seed`, tighten failed windows, up to `rounds` times or until a schedule
    holds on `seed` and then on `confirm` more seeds (seed + 1, ...): a burst window can pass on
    one seed by luck, and the proof afterwards is on seeds no round saw. After the first schedule
    that holds, one round loosens the tightened windows halfway back; `on_part` is told of each
    finished replay part."""
    scale = np.ones((load.windows, len(sc.gpus)))
    done: list[ScheduleRound] = []
    per = gpus_per_instance(sc)
    loosened = False
    for index in range(1, rounds + 1):
        s = solve_schedule(load, sc.gpus, sc.profiles, sc.solve, opts, scale)
        fleet = fleet_of_schedule(s, per)
        for k in range(confirm + 1):
            run = replay(sc, load, fleet, seed + k, parts=parts, executor=executor, warmup_s=warmup_s, on_part=on_part)
            if not run.held:
                break
        r = ScheduleRound(index, s, run, seed=seed + k)
        failed = run.judged[~run.judged["held"]]
        for _, row in failed.iterrows():
            t = int(row["window"])
            # At least as far as makes the window's fleet too small: a fleet with room to spare
            # would otherwise meet the tightened capacity and be planned again unchanged.
            busiest = window_utilisation(sc, load, s, t, scale[t])
            scale[t] = np.maximum(scale[t] * min(tighten_factor(row, sc.slo.attainment), busiest * EDGE), MIN_SCALE)
            r.tightened.append(t)
        done.append(r)
        if on_round is not None:
            on_round(r)
        if loosened and not run.held:
            break  # the loosened schedule failed: the one held before it is the answer
        if run.held:
            if loosened or not (scale < 1).any() or index == rounds:
                break
            # Once: give the tightened windows half their tightening back (in log terms). A cheaper
            # schedule that still holds wins; one that fails leaves the held one the answer.
            loosened = True
            r.loosened = [int(t) for t in np.nonzero((scale < 1).any(axis=1))[0]]
            scale = np.sqrt(scale)
            if solve_schedule(load, sc.gpus, sc.profiles, sc.solve, opts, scale).cost >= s.cost - 1e-9:
                break
    return ScheduleReport(done)
