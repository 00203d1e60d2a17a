"""The four strategies side by side on the same replay: the same windows, the same requests.

The replayed span is windows [first, first + count) of the load. What a strategy may know:

- static and day-ahead plan on the **forecast** (`forecast`): for each window, the same window
  `period` windows earlier (a day of 10-minute windows: 144), or with `history` > 1 every bucket
  at its highest rate over the last `history` such windows. Planning and tightening replay the
  forecast on the tuning seed.
- oracle plans on the replayed span itself, tightened on the tuning seed.
- reactive sees only what has arrived (on the replay's own seed), as AIBrix does.

Every strategy is then replayed on the same fresh seed (`seed + FRESH`), which no loop tuned on;
its cost is what the fleet was paid as run (start-ups and drains included), not what was planned.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from melange.load import Load
from melange.scenario import Scenario
from melange.schedule.loop import ScheduleReport, plan_schedule
from melange.schedule.milp import Schedule, ScheduleOptions
from melange.schedule.replay import Replay, fleet_of_schedule, replay
from melange.schedule.strategies import Reactive, gpus_per_instance, reactive_fleet

FRESH = 1000  # the replay seed's offset from the tuning seed
STRATEGIES = ("static", "reactive", "dayahead", "oracle")


def forecast(load: Load, first: int, count: int, period: int, history: int = 1) -> Load:
    """Windows [first, first + count) as foreseen from the same windows 1..`history` periods earlier:
    each bucket at the highest rate it had in any of them (so the work per request, not only the
    request rate, is covered), burstiness that of the burstiest; one earlier period: exactly it."""
    from melange.core import MelangeError

    if period < 1 or history < 1 or first - history * period < 0:
        raise MelangeError(f"--history: the forecast needs {history} x {period} windows before window {first}, "
                           f"the load has {first}")
    t = np.arange(first, first + count)
    past = np.stack([t - h * period for h in range(1, history + 1)])  # (history, count)
    rates = np.max(load.rate[past][..., None, None] * load.distribution[past], axis=0)  # (count, n_in, n_out)
    total = rates.sum(axis=(1, 2))
    shares = np.where(total[:, None, None] > 0, rates / np.where(total > 0, total, 1.0)[:, None, None], 0.0)
    bursty = past[np.argmax(load.cv[past], axis=0), np.arange(count)]
    streams = None if load.streams is None else load.streams[bursty]
    outside = None if load.outside_grid is None else load.outside_grid[bursty]
    return replace(load, name=f"{load.name} forecast", rate=total, cv=load.cv[bursty], distribution=shares,
                   outside_grid=outside, streams=streams)


@dataclass
class Outcome:
    """One strategy: its replay on the fresh seed, and how it was planned."""

    name: str
    replay: Replay
    planned_cost: float | None = None  # the schedule's own figure ($), where there is one
    solve_s: float = 0.0
    rounds: int = 0
    held_when_tuned: bool | None = None
    status: str = ""  # the solver's: optimal / feasible (gap) / -

    def row(self) -> dict:
        """JSON-ready figures."""
        return {"strategy": self.name, **self.replay.summary(), "planned_cost": self.planned_cost,
                "solve_s": round(self.solve_s, 2), "rounds": self.rounds, "held_when_tuned": self.held_when_tuned,
                "status": self.status}


def chosen(report: ScheduleReport) -> Schedule:
    """The schedule a report stands for: the cheapest that held, else the last one tried."""
    return (report.best or report.last).schedule


def compare(sc: Scenario, load: Load, first: int, count: int, period: int, opts: ScheduleOptions, *,
            seed: int, history: int = 1, rounds: int = 4, parts: int = 1, executor=None,
            reactive: Reactive = Reactive(), only: tuple[str, ...] = STRATEGIES,
            on_event: Callable[[str], None] | None = None) -> dict[str, Outcome]:
    """Plan each strategy and replay it on the same fresh seed (module docstring)."""
    say = on_event or (lambda message: None)
    day = load.span(first, count)
    ahead = forecast(load, first, count, period, history)
    fresh = seed + FRESH
    per = gpus_per_instance(sc)
    out: dict[str, Outcome] = {}

    def planned(name: str, basis: Load, how: ScheduleOptions) -> Schedule:
        start = time.perf_counter()
        report = plan_schedule(sc, basis, how, seed=seed, rounds=rounds, parts=parts, executor=executor,
                               on_round=lambda r: say(f"{name}: round {r.index}, ${r.schedule.cost:.2f} planned, "
                                                      f"{'held' if r.replay.held else 'failed'} "
                                                      f"{len(r.replay.judged) - int(r.replay.judged['held'].sum())} "
                                                      "windows when tuned"))
        s = chosen(report)
        run = replay(sc, day, fleet_of_schedule(s, per), fresh, parts=parts, executor=executor)
        out[name] = Outcome(name, run, s.cost, time.perf_counter() - start, len(report.rounds),
                            report.best is not None, f"{s.status} ({s.method}, gap {s.gap or 0:.2%})")
        say(f"{name}: ${run.cost:.2f} as run, worst window {run.worst_attainment}")
        return s

    oracle = None
    if "static" in only:
        planned("static", ahead, replace(opts, static=True))
    if "dayahead" in only:
        planned("dayahead", ahead, opts)
    if "oracle" in only or "reactive" in only:
        oracle = planned("oracle", day, opts)
    if "reactive" in only:
        start = time.perf_counter()
        initial = {g: int(n) for g, n in zip(oracle.gpus, oracle.counts[0]) if n}  # warm, as the others start
        fleet, solves = reactive_fleet(sc, day, fresh, initial, reactive)
        run = replay(sc, day, fleet, fresh, parts=parts, executor=executor)
        out["reactive"] = Outcome("reactive", run, None, time.perf_counter() - start, solves, None,
                                  f"{solves} solves every {reactive.every_s:g} s")
        say(f"reactive: ${run.cost:.2f} as run, worst window {run.worst_attainment}")
    return {name: out[name] for name in STRATEGIES if name in out and name in only}
