"""Four ways to run a day's fleet, each turned into a `Fleet` the replay runs alike.

- **static**: one fleet for the whole day, the cheapest that serves its every window (the MILP
  with n[t] = n[0]): what sizing for the peak buys.
- **reactive**: AIBrix's loop: every `every_s` seconds, re-solve Mélange's one-rate problem from
  the traffic observed over the trailing `lookback_s` (its rate and length mix); instances asked
  for then serve after their start-up; scale-down waits until no recommendation over the last
  `down_delay_s` wanted them (Kubernetes' scale-down stabilisation), then drains them.
- **day-ahead**: the schedule planned (and held in replay) on yesterday's traffic, run today: its
  error is today's traffic differing from yesterday's.
- **oracle**: the schedule planned on the very day it is replayed on (other seeds than the
  replay's): the best a forecast could do.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from melange.core import Workload
from melange.load import Load
from melange.optimizer import solve
from melange.scenario import Scenario
from melange.schedule.milp import startup_times
from melange.schedule.replay import Fleet
from melange.sim.arrivals import window_arrivals
from melange.sim.timeline import Timeline

REACTIVE_EVERY_S = 60.0  # AIBrix re-solves every 10 s; a minute keeps a day's 1,440 solves quick
REACTIVE_LOOKBACK_S = 240.0  # AIBrix's window of observed load
REACTIVE_DOWN_DELAY_S = 300.0  # Kubernetes' default scale-down stabilisation window


@dataclass(frozen=True)
class Reactive:
    """The reactive autoscaler's settings."""

    every_s: float = REACTIVE_EVERY_S
    lookback_s: float = REACTIVE_LOOKBACK_S
    down_delay_s: float = REACTIVE_DOWN_DELAY_S


def gpus_per_instance(sc: Scenario) -> np.ndarray:
    """(G,) GPUs in one instance of each type."""
    return np.array([g.gpus for g in sc.gpus], dtype=float)


def observed(sc: Scenario, load: Load, seed: int, bin_s: float) -> np.ndarray:
    """(bins, n_in, n_out) requests that arrive in each `bin_s` bin of the replay of `load` on `seed`
    (the very requests the replay will send), window by window to keep memory flat."""
    W = load.window_s
    bins = int(np.ceil(load.duration_s / bin_s))
    counts = np.zeros((bins, *load.grid.shape))
    for t in range(load.windows):
        a, _ = window_arrivals([load.window(t, sc.workload)], W, t, seed)
        inside = (a.bucket_in >= 0) & (a.bucket_out >= 0)
        k = np.minimum((a.time_s[inside] // bin_s).astype(np.int64), bins - 1)
        np.add.at(counts, (k, a.bucket_in[inside], a.bucket_out[inside]), 1)
    return counts


def reactive_fleet(sc: Scenario, load: Load, seed: int, initial: dict[str, int],
                   settings: Reactive = Reactive()) -> tuple[Fleet, int]:
    """The reactive autoscaler's fleet over the replay of `load` on `seed`, starting from `initial`
    instances serving at t=0; also the number of solves it made."""
    names = [g.name for g in sc.gpus]
    G, every = len(names), settings.every_s
    startup = startup_times(sc.gpus)
    counts = observed(sc, load, seed, every)
    look = max(1, int(round(settings.lookback_s / every)))
    hold = max(1, int(round(settings.down_delay_s / every)))
    kind, ready, stop, asked = [], [], [], []
    alive: list[list[int]] = [[] for _ in names]

    def start(g: int, at: float, paid_from: float) -> None:
        alive[g].append(len(kind))
        kind.append(g), ready.append(at), stop.append(np.inf), asked.append(paid_from)

    for g, name in enumerate(names):
        for _ in range(initial.get(name, 0)):
            start(g, 0.0, 0.0)
    first = np.zeros((*load.grid.shape, G))
    table_s, tables, wanted = [0.0], [first], []
    options = replace(sc.solve, slice_factor="continuous")
    solves = 0
    for k in range(1, len(counts)):
        now = k * every
        seen = counts[max(0, k - look):k].sum(axis=0)
        span = min(k, look) * every
        target = np.zeros(G, dtype=int)
        if seen.sum() > 0:
            work = Workload(load.grid, seen / seen.sum(), float(seen.sum()) / span)
            plan = solve(work, sc.gpus, sc.profiles, options)
            solves += 1
            target = np.array([plan.counts.get(g, 0) for g in names])
            table_s.append(now)
            tables.append(np.stack([plan.share.get(g, np.zeros(load.grid.shape)) for g in names], axis=-1))
        wanted.append(target)
        keep = np.max(wanted[-hold:], axis=0)  # scale down only to what the recent past still wanted
        for g in range(G):
            have = len(alive[g])
            for _ in range(max(0, int(target[g]) - have)):
                start(g, now + startup[g], now)
        for g in range(G):
            for _ in range(max(0, len(alive[g]) - int(keep[g]))):
                # Cancel one still starting first; never stop the last instance serving anywhere
                # (as Kubernetes keeps the old pods until the new ones are ready).
                booting = [k for k in alive[g] if ready[k] > now]
                serving = sum(1 for h in range(G) for k in alive[h] if ready[k] <= now)
                if not booting and serving <= 1:
                    break
                victim = booting[-1] if booting else alive[g][-1]
                alive[g].remove(victim)
                stop[victim] = now
    if len(tables) > 1:  # before the first solve, the split of the first one
        tables[0] = tables[1]
    timeline = Timeline(names, np.array(kind, dtype=np.int64), np.array(ready, dtype=float),
                        np.array(stop, dtype=float), np.array(table_s), np.array(tables))
    cost = np.array([g.cost for g in sc.gpus], dtype=float)
    return Fleet(timeline, np.array(asked, dtype=float), cost, gpus_per_instance(sc)), solves

