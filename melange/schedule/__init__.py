"""Plan a day: a fleet schedule for load that changes over hours, proven by replaying it.

    job = resolve(sc)                        # the scenario's `schedule:` section (+ overrides)
    report = plan_schedule(sc, job.span, job.options, seed=0)   # solve, replay, tighten
    outcomes = compare(sc, job.load, job.first, job.count, job.period, job.options, seed=0)

`milp` (the horizon MILP) and `decompose` (per window + shortest path + bound) solve; `replay`
proves a fleet over time; `strategies` builds static and reactive fleets; `compare` runs the four
side by side; `outputs` writes schedule.json / .csv and the plot.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from melange.core import MelangeError
from melange.load import Load, read_load
from melange.scenario import Scenario
from melange.schedule.milp import ScheduleOptions

DAY_S = 86400.0


@dataclass(frozen=True)
class Job:
    """What `melange schedule` runs: the whole load (for forecasts), the span to plan, the options."""

    load: Load  # the whole load, on the scenario's grid, scaled
    first: int
    count: int
    period: int  # windows between a window and the one a forecast takes it from
    history: int
    options: ScheduleOptions

    @property
    def span(self) -> Load:
        """The windows planned and replayed."""
        return self.load.span(self.first, self.count)


def availability(sc: Scenario, caps: dict, count: int) -> np.ndarray | None:
    """(windows, types) instances one may hold, from `schedule.availability` (None: no caps)."""
    if not caps:
        return None
    names = [g.name for g in sc.gpus]
    table = np.full((count, len(names)), 10**9, dtype=np.int64)
    for name, cap in caps.items():
        if name not in names:
            raise MelangeError(f"schedule.availability.{name}: not a GPU type of the scenario ({', '.join(names)})")
        if isinstance(cap, list) and len(cap) != count:
            raise MelangeError(f"schedule.availability.{name}: {len(cap)} caps for {count} windows")
        table[:, names.index(name)] = cap
    return table


def resolve(sc: Scenario, *, load: str | None = None, scale: float | None = None, first: int | None = None,
            count: int | None = None, history: int | None = None, period: int | None = None,
            min_up: int | None = None, max_changes: int | None = None, prove_s: float = 0.0) -> Job:
    """The scenario's `schedule:` section with the command line's overrides, checked."""
    spec = sc.schedule
    name = load or (spec.load if spec else None)
    if name is None:
        raise MelangeError("schedule.load: required (a built-in load such as servegen-m-large, or a load file; "
                           "--load NAME)")
    whole = read_load(name, sc.workload.grid)
    factor = scale if scale is not None else (spec.scale if spec else 1.0)
    whole = whole.scaled(factor) if factor != 1.0 else whole
    first = first if first is not None else (spec.first_window if spec else 0)
    count = count if count is not None else (spec.windows if spec and spec.windows else whole.windows - first)
    whole.span(first, count)  # refuses a range outside the load, naming --windows
    default_period = max(1, round(DAY_S / whole.window_s))
    period = period or (spec.period_windows if spec and spec.period_windows else default_period)
    history = history or (spec.history if spec else 1)
    options = ScheduleOptions(min_up_windows=min_up or (spec.min_up_windows if spec else 1),
                              max_changes_per_hour=max_changes if max_changes is not None else
                              (spec.max_changes_per_hour if spec else None),
                              drain_s=spec.drain_s if spec else ScheduleOptions.drain_s, prove_s=prove_s,
                              time_limit_s=sc.solve.time_limit_s,
                              availability=availability(sc, spec.availability if spec else {}, count))
    if sc.slo is None:
        raise MelangeError("slo: required to prove a schedule by replay")
    missing = [g.name for g in sc.gpus if g.name not in sc.step_models]
    if missing:
        raise MelangeError(f"gpus[{missing[0]}].step_time: needed to replay a schedule (roofline or a linear model)")
    return Job(whole, first, count, period, history, options)
