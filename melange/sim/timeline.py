"""A fleet that changes during the run: instances start serving and stop (then drain) on a timeline.

A schedule, an autoscaler or a static plan all come down to the same facts, known before the run:
when each instance starts taking requests, when it stops, and how each bucket's traffic is split
over the GPU types from some moment on. `TimelineSimulation` replays arrivals through them:

- a request's GPU type is drawn from the split in force at its arrival, among the types with an
  instance serving then (a type whose instances are all still starting gets nothing, so a fleet
  provisioned late shows as overload on the ones that serve: the ramp the schedule missed);
- among that type's serving instances the router picks one as in `Simulation`;
- a stopped instance takes no new request and finishes the ones it holds: nothing in flight is
  dropped, and `last_finish_s` says when each instance was done (what it is paid until).

Instances not serving carry a huge offset on the router's work list, so least-work never picks
them and the instances' own bookkeeping (+/- tokens) needs no change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy

from melange.core import EngineConfig, MelangeError, Plan, StepTimeModel, Workload
from melange.sim.arrivals import Arrivals
from melange.sim.instance import Instance
from melange.sim.requests import Outcomes
from melange.sim.router import ROUTERS, choose_types, type_table
from melange.sim.simulation import Simulation

OFF = 1 << 60  # work offset of an instance that is not serving: least-work never picks it


@dataclass(frozen=True)
class Timeline:
    """When each instance serves, and the traffic split over types from each moment on."""

    names: list[str]  # GPU types
    kind: np.ndarray  # (I,) type index of each instance
    ready_s: np.ndarray  # (I,) takes requests from this time on
    stop_s: np.ndarray  # (I,) takes none from this time on (inf: never); drains what it holds
    table_s: np.ndarray  # (K,) time each split starts, increasing
    tables: np.ndarray  # (K, n_in, n_out, G) share of each bucket per type

    def serving(self, t: float) -> np.ndarray:
        """(G,) instances of each type taking requests at time t."""
        live = (self.ready_s <= t) & (self.stop_s > t)
        return np.bincount(self.kind[live], minlength=len(self.names))

    def events(self) -> list[tuple[float, int, int]]:
        """(time, +1 serve / -1 stop, instance) in time order."""
        ev = [(float(t), 1, k) for k, t in enumerate(self.ready_s)]
        ev += [(float(t), -1, k) for k, t in enumerate(self.stop_s) if np.isfinite(t)]
        return sorted(ev)


def draw_types(timeline: Timeline, arrivals: Arrivals, grid, rng: np.random.Generator,
               u: np.ndarray | None = None) -> np.ndarray:
    """Type index of each request: the split in force at its arrival, over the types serving then
    (`u`: the requests' uniform draws, if drawn beforehand)."""
    cuts = np.unique(np.concatenate([timeline.table_s, timeline.ready_s, timeline.stop_s[np.isfinite(timeline.stop_s)]]))
    segment = np.searchsorted(cuts, arrivals.time_s, side="right") - 1
    types = np.zeros(len(arrivals), dtype=np.int64)
    shape = grid.shape
    for k in np.unique(segment):  # arrivals are in time order, so a segment's requests are contiguous
        mine = np.arange(np.searchsorted(segment, k, side="left"), np.searchsorted(segment, k, side="right"))
        at = float(cuts[k]) if k >= 0 else -np.inf
        serving = timeline.serving(at)
        if not serving.any():
            raise MelangeError(f"timeline: no instance serves at {float(arrivals.time_s[mine[0]]):.1f} s, "
                               "where requests arrive")
        split = timeline.tables[max(0, np.searchsorted(timeline.table_s, at, side="right") - 1)]
        plan = Plan({g: int(c) for g, c in zip(timeline.names, serving)},
                    {g: split[..., q] * (serving[q] > 0) for q, g in enumerate(timeline.names)}, 0.0)
        table = type_table(plan, timeline.names, shape)
        types[mine] = choose_types(table, grid, arrivals.input_tokens[mine], arrivals.output_tokens[mine], rng,
                                   None if u is None else u[mine])
    return types


class TimelineSimulation(Simulation):
    """`Simulation` whose instances start and stop serving on a `Timeline`."""

    def __init__(self, timeline: Timeline, arrivals: Arrivals, workload: Workload,
                 step_models: dict[str, StepTimeModel], engines: dict[str, EngineConfig],
                 rng: np.random.Generator, *, router: str = "least_work", exact: bool = False,
                 progress: Callable[[float], None] | None = None, draws: np.ndarray | None = None) -> None:
        if router not in ROUTERS:
            raise MelangeError(f"router: unknown {router!r} (choose from {', '.join(ROUTERS)})")
        missing = sorted({timeline.names[k] for k in timeline.kind} - set(step_models))
        if missing:
            raise MelangeError(f"gpus[{missing[0]}].step_time: needed to simulate this type")
        self.env = simpy.Environment()
        self.arrivals, self.workload, self.progress = arrivals, workload, progress
        self.timeline = timeline
        self.names = list(timeline.names)
        self.types = draw_types(timeline, arrivals, workload.grid, rng, draws)
        self.outcomes = Outcomes(len(arrivals))
        self.work: list[list[int]] = [[] for _ in self.names]
        self.by_type: list[list[Instance]] = [[] for _ in self.names]
        self.instances: list[Instance] = []
        for k, g in enumerate(timeline.kind):
            name = self.names[g]
            self.work[g].append(OFF)
            inst = Instance(self.env, k, name, step_models[name], engines.get(name, EngineConfig()),
                            self.outcomes, self.work[g], len(self.by_type[g]), exact)
            self.by_type[g].append(inst)
            self.instances.append(inst)
        self._slot = [inst.slot for inst in self.instances]
        self.pickers = [ROUTERS[router](rng.spawn(1)[0]) for _ in self.names]
        self._events, self._next_event = timeline.events(), 0
        self.arrived = 0
        a = arrivals
        self._times, self._prompts = a.time_s.tolist(), a.input_tokens.tolist()
        self._outputs, self._types = a.output_tokens.tolist(), self.types.tolist()
        self._arrive()

    def _apply_events(self, now: float) -> None:
        """Bring instances in and out of service up to `now` (inclusive)."""
        events, kind = self._events, self.timeline.kind
        while self._next_event < len(events) and events[self._next_event][0] <= now:
            _, sign, k = events[self._next_event]
            self.work[kind[k]][self._slot[k]] -= sign * OFF
            self._next_event += 1

    def _pick(self, g: int, now: float) -> int:
        """As `Simulation._pick`, with the fleet brought up to date first; an instance not
        serving is never chosen (round robin and random try again)."""
        self._apply_events(now)
        work = self.work[g]
        k = self.pickers[g].pick(work)
        while work[k] >= OFF:
            k = self.pickers[g].pick(work)
        return k

    def last_finish_s(self) -> np.ndarray:
        """(I,) when each instance finished its last request (-inf: it got none; NaN: one is
        still in flight); a stopped instance is paid until the later of this and its stop."""
        n = self.arrived
        inst = np.array(self.outcomes.instance[:n], dtype=np.int64)
        end = np.array(self.outcomes.e2e[:n], dtype=float)
        failed = np.array([e is not None for e in self.outcomes.error[:n]], dtype=bool)
        end[failed] = self.arrivals.time_s[:n][failed]
        last = np.full(len(self.instances), -np.inf)
        ok = inst >= 0
        np.maximum.at(last, inst[ok], np.where(np.isnan(end[ok]), np.inf, end[ok]))
        return np.where(np.isposinf(last), np.nan, last)
