"""A day's fleet as one MILP over the horizon: counts per GPU type per window, with the cost of change.

Sets and parameters (per window t of `window_s` seconds, GPU type g, bucket b):
    r[t,b]    req/s of bucket b in window t (headroom included)
    cap[b,g]  req/s one instance of g carries in bucket b (profile x utilisation ceiling), times
              `scale[t,g]`, the validation loop's per-window tightening (1 to start)
    c[g]      $/h of one instance;  d[g]  start-up s (paid, not serving);  e  drain s (paid per stop)
Variables:
    n[t,g]    instances serving in window t (integer, min_count .. max_count)
    u[t,g]    instances that start serving at t's start (asked for d[g] s earlier), v[t,g] stopped
    y[t,b,g]  share of bucket b's traffic in window t that g serves (continuous: the slice limit)
Model:
    min  sum_t,g c[g]/3600 · (window_s·n[t,g] + d[g]·u[t,g] + e·v[t,g])
    s.t. place:     sum_g y[t,b,g] = 1
         load:      sum_b r[t,b] / cap[b,g] / scale[t,g] · y[t,b,g] <= n[t,g]
         flow:      n[t,g] - n[t-1,g] = u[t,g] - v[t,g]          (n[-1,g] = `initial`, 0 by default)
         min up:    n[t,g] >= sum_{s=t-M+1..t} u[s,g]             (an instance serves >= M windows)
         changes:   sum over each clock hour's windows (the first window's start aside) of sum_g (u + v) <= K
         available: n[t,g] + (instances booting during t for later windows) <= cap_n[t,g]
         static:    n[t,g] = n[0,g]                              (one fleet for the whole horizon)

Shares are continuous (Mélange's continuous-slice limit); counts are integers: 3·T·G integers
whatever the grid. Yet HiGHS's branch and bound multiplies T nearly independent problems (48
windows: 1 % from proven after 120 s), so `solve_schedule` goes three ways:
- a static fleet or availability caps: this MILP;
- otherwise `decompose.py` (each window's proven optimum, a shortest path over candidate fleets
  that prices every change, and a proven lower bound), whose gap is printed; `prove_s` spends
  that long on this MILP, started from it, to narrow the gap;
- with a minimum up-time or a change cap: the decomposition kept up long enough to meet them
  (`held`) starts this MILP, which runs to `time_limit_s`; the decomposition's bound still holds.
"optimal" means within `gap` (0.1 %) of the best proven bound; else "feasible" and the gap.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import mip
import numpy as np

from melange.core import GpuType, MelangeError, Plan, Profile, SolveOptions
from melange.load import Load
from melange.optimizer.backend import new_model, optimize
from melange.optimizer.milp import MIN_MAX_RATE, ceilings
from melange.optimizer.search import status_name
from melange.schedule.decompose import decompose

DEFAULT_STARTUP_S = 300.0  # a GPU type with no start-up time given (catalog default too)
DEFAULT_DRAIN_S = 60.0  # paid per stopped instance: its requests in flight finish
SHARE_TOLERANCE = 1e-9  # shares the LP leaves below this are dropped (routing noise)


@dataclass(frozen=True)
class ScheduleOptions:
    """How a schedule may change, and how hard the solver works."""

    min_up_windows: int = 1  # an instance serves at least this many windows once started
    max_changes_per_hour: int | None = None  # starts + stops in each clock hour, all types
    drain_s: float = DEFAULT_DRAIN_S
    static: bool = False  # one fleet for every window (the static plan for the peak)
    initial: dict[str, int] = field(default_factory=dict)  # serving before the first window (its start-up not paid)
    availability: np.ndarray | None = None  # (T, G) instances of each type one may hold per window
    time_limit_s: float = 60.0  # the whole-horizon MILP's limit
    gap: float = 1e-3  # proven within this relative gap of the optimum counts as optimal
    prove_s: float = 0.0  # after a decomposition above `gap`: this long on the whole MILP, started from it
    backend: str = "highs"


@dataclass
class Schedule:
    """A fleet per window: counts per type, each bucket's split, and what it costs."""

    gpus: list[str]
    window_s: float
    counts: np.ndarray  # (T, G) instances serving in each window
    starts: np.ndarray  # (T, G) instances that begin serving at the window's start
    stops: np.ndarray  # (T, G) instances that stop taking requests at the window's start
    share: np.ndarray  # (T, n_in, n_out, G) share of each bucket's traffic per type
    cost_per_hour: np.ndarray  # (G,) $/h per instance
    startup_s: np.ndarray  # (G,)
    drain_s: float
    status: str = "optimal"  # optimal: proven within ScheduleOptions.gap; feasible: gap above it
    bound: float | None = None  # $ over the horizon, proven lower bound
    solve_time_s: float = 0.0
    initial: dict[str, int] = field(default_factory=dict)
    method: str = "milp"  # milp (whole horizon) | decomposition (decompose.py)

    @property
    def windows(self) -> int:
        """Number of windows T."""
        return len(self.counts)

    def window_cost(self) -> np.ndarray:
        """(T,) $ per window as planned: serving time, plus start-ups for it and drains at its start."""
        c = self.cost_per_hour / 3600.0
        return (self.counts * self.window_s + self.starts * self.startup_s + self.stops * self.drain_s) @ c

    @property
    def cost(self) -> float:
        """$ over the horizon as planned."""
        return float(self.window_cost().sum())

    @property
    def gap(self) -> float | None:
        """Relative gap between the cost and the proven bound (None without a bound)."""
        if self.bound is None or self.cost <= 0:
            return None
        return max(0.0, (self.cost - self.bound) / self.cost)

    @property
    def changes(self) -> int:
        """Instance starts and stops over the horizon (the first window's fleet counts as starts)."""
        return int(self.starts.sum() + self.stops.sum())

    def plan(self, t: int) -> Plan:
        """Window t's fleet as a one-rate plan (counts and shares; cost in $/h)."""
        counts = {g: int(n) for g, n in zip(self.gpus, self.counts[t])}
        share = {g: self.share[t, ..., k] for k, g in enumerate(self.gpus)}
        return Plan(counts, share, float(self.counts[t] @ self.cost_per_hour), status=self.status)

    def to_dict(self) -> dict:
        """JSON-ready form."""
        return {"gpus": self.gpus, "window_s": self.window_s, "status": self.status, "method": self.method,
                "cost": self.cost,
                "bound": self.bound, "gap": self.gap, "solve_time_s": self.solve_time_s,
                "changes": self.changes, "drain_s": self.drain_s, "initial": self.initial,
                "cost_per_hour": self.cost_per_hour.tolist(), "startup_s": self.startup_s.tolist(),
                "counts": self.counts.tolist(), "starts": self.starts.tolist(), "stops": self.stops.tolist(),
                "window_cost": self.window_cost().round(6).tolist(), "share": self.share.round(9).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> Schedule:
        """Inverse of to_dict."""
        return cls(list(d["gpus"]), float(d["window_s"]), np.asarray(d["counts"], dtype=np.int64),
                   np.asarray(d["starts"], dtype=np.int64), np.asarray(d["stops"], dtype=np.int64),
                   np.asarray(d["share"], dtype=float), np.asarray(d["cost_per_hour"], dtype=float),
                   np.asarray(d["startup_s"], dtype=float), float(d["drain_s"]), d.get("status", "optimal"),
                   d.get("bound"), float(d.get("solve_time_s", 0.0)), dict(d.get("initial") or {}),
                   d.get("method", "milp"))


def startup_times(gpus: list[GpuType]) -> np.ndarray:
    """(G,) start-up seconds of each type (DEFAULT_STARTUP_S where not given)."""
    return np.array([DEFAULT_STARTUP_S if g.startup_s is None else float(g.startup_s) for g in gpus])


def capacities(gpus: list[GpuType], profiles: dict[str, Profile], solve: SolveOptions) -> np.ndarray:
    """(n_in, n_out, G) req/s one instance of each type plans to carry per bucket (0: cannot serve)."""
    missing = [g.name for g in gpus if g.name not in profiles]
    if missing:
        raise MelangeError(f"gpus[{missing[0]}].profile: no max-rate profile for this GPU type")
    table = np.stack([np.asarray(profiles[g.name].max_rate, dtype=float) for g in gpus], axis=-1)
    return np.where(table >= MIN_MAX_RATE, table, 0.0) * ceilings(gpus, solve)


def _check(load: Load, cap: np.ndarray, gpus: list[GpuType], opts: ScheduleOptions) -> np.ndarray:
    """(T, n_in, n_out) bucket rates; refuse a window's bucket no type can serve, or bad options."""
    if opts.min_up_windows < 1:
        raise MelangeError(f"schedule.min_up_windows: must be >= 1, got {opts.min_up_windows}")
    if opts.max_changes_per_hour is not None and opts.max_changes_per_hour < 0:
        raise MelangeError(f"schedule.max_changes_per_hour: must be >= 0, got {opts.max_changes_per_hour}")
    if opts.availability is not None and np.shape(opts.availability) != (load.windows, len(gpus)):
        raise MelangeError(f"schedule.availability: must be {load.windows} windows x {len(gpus)} types")
    for name in opts.initial:
        if name not in {g.name for g in gpus}:
            raise MelangeError(f"schedule.initial: unknown GPU type {name!r}")
    rates = load.rate[:, None, None] * load.distribution
    servable = (cap > 0).any(axis=-1)
    bad = np.argwhere((rates > 0) & ~servable[None])
    if len(bad):
        t, i, j = bad[0]
        raise MelangeError(f"infeasible: no GPU type can serve {load.grid.label(i, j)} in window {t} "
                           f"({rates[t, i, j]:.3g} req/s)")
    return rates


def solve_schedule(load: Load, gpus: list[GpuType], profiles: dict[str, Profile], solve: SolveOptions,
                   opts: ScheduleOptions | None = None, scale: np.ndarray | None = None) -> Schedule:
    """The cheapest schedule for `load`; `scale` (T, G) multiplies each window's per-instance
    capacity (the validation loop's tightening). Windows coupled only by the cost of change go
    through `decompose` (per-window optima, shortest path, proven bound); minimum up-times, change
    caps, availability limits and a static fleet need the whole-horizon MILP of the module docstring."""
    opts = opts or ScheduleOptions()
    start = time.perf_counter()
    cap = capacities(gpus, profiles, solve)
    rates = _check(load, cap, gpus, opts) * (1.0 + solve.headroom)
    T, G = load.windows, len(gpus)
    scale = np.ones((T, G)) if scale is None else np.asarray(scale, dtype=float)
    startup = startup_times(gpus)
    cost = np.array([g.cost for g in gpus])
    initial = np.array([opts.initial.get(g.name, 0) for g in gpus])
    limited = opts.min_up_windows > 1 or opts.max_changes_per_hour is not None
    if opts.static or opts.availability is not None:
        counts, starts, stops, share, status, bound = _solve_milp(load, gpus, rates, cap, scale, startup, cost, initial, opts)
        method = "milp"
    else:
        counts, share, bound = decompose(load, gpus, profiles, solve, cap, scale, startup, opts.drain_s, initial)
        counts = held(counts, initial, opts, load.window_s)
        starts, stops = transitions(counts, initial)
        status, method = "optimal", "decomposition" + (" + repair" if limited else "")
        if limited or (opts.prove_s > 0 and _gap(counts, starts, stops, cost, startup, opts.drain_s, load.window_s,
                                                 bound) > opts.gap):
            # The decomposition's bound holds for the limited problem too (it relaxes it); the whole
            # MILP, started from the repaired schedule, narrows the gap in the time it is given.
            limit = opts.time_limit_s if limited else opts.prove_s
            better = _solve_milp(load, gpus, rates, cap, scale, startup, cost, initial,
                                 replace(opts, time_limit_s=limit), (counts, starts, stops, share))
            bound = max(bound, better[5])
            if _planned(better[0], better[1], better[2], cost, startup, opts.drain_s, load.window_s) < \
                    _planned(counts, starts, stops, cost, startup, opts.drain_s, load.window_s) - 1e-9:
                counts, starts, stops, share = better[:4]
            method += " + milp"
    s = Schedule([g.name for g in gpus], load.window_s, counts, starts, stops, share, cost, startup, opts.drain_s,
                 status, bound, time.perf_counter() - start, dict(opts.initial), method)
    if s.gap is not None and s.gap > opts.gap and s.status == "optimal":
        s.status = "feasible"
    return s


def transitions(counts: np.ndarray, initial: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(starts, stops) per window that take the fleet from `initial` through `counts`."""
    previous = np.vstack([initial[None, :], counts[:-1]])
    return np.maximum(counts - previous, 0), np.maximum(previous - counts, 0)


def changes_per_hour(counts: np.ndarray, initial: np.ndarray, window_s: float) -> int:
    """Most starts + stops in one clock hour, the first window's start aside."""
    starts, stops = transitions(counts, initial)
    moves = (starts + stops).sum(axis=1)[1:]
    per = max(1, int(round(3600.0 / window_s)))
    padded = np.concatenate([[0], moves])
    return int(max((padded[h:h + per].sum() for h in range(0, len(padded), per)), default=0))


def held(counts: np.ndarray, initial: np.ndarray, opts: ScheduleOptions, window_s: float) -> np.ndarray:
    """`counts` kept up long enough to meet the minimum up-time and the change cap: each window
    holds the most of the last k windows (an instance started stays k windows; fewer stops), k
    from the minimum up-time and doubled until the cap holds, at worst the whole horizon's most
    from the start (no change at all). More instances than planned never break the load rows."""
    k = opts.min_up_windows
    while True:
        kept = np.array([counts[max(0, t - k + 1):t + 1].max(axis=0) for t in range(len(counts))])
        cap = opts.max_changes_per_hour
        if cap is None or changes_per_hour(kept, initial, window_s) <= cap:
            return kept
        if k >= len(counts):
            return np.broadcast_to(counts.max(axis=0), counts.shape).copy()
        k = min(2 * k, len(counts))


def _planned(counts, starts, stops, cost, startup, drain_s: float, window_s: float) -> float:
    """$ over the horizon of a schedule's counts, starts and stops (as `Schedule.cost`)."""
    return float(((counts * window_s + starts * startup + stops * drain_s) @ cost).sum() / 3600.0)


def _gap(counts, starts, stops, cost, startup, drain_s: float, window_s: float, bound: float) -> float:
    """Relative gap of a schedule's cost over a lower bound."""
    planned = _planned(counts, starts, stops, cost, startup, drain_s, window_s)
    return 0.0 if planned <= 0 else max(0.0, (planned - bound) / planned)


def _solve_milp(load: Load, gpus: list[GpuType], rates: np.ndarray, cap: np.ndarray, scale: np.ndarray,
                startup: np.ndarray, cost: np.ndarray, initial: np.ndarray, opts: ScheduleOptions,
                known: tuple | None = None):
    """The whole-horizon MILP: (counts, starts, stops, share, status, bound); `known` (counts,
    starts, stops, share) starts the search."""
    T, G, W = load.windows, len(gpus), load.window_s
    m = new_model(opts.backend, "schedule")
    m.max_mip_gap = opts.gap
    lo = [g.min_count for g in gpus]
    hi = [mip.INF if g.max_count is None else g.max_count for g in gpus]
    n = [[m.add_var(var_type=mip.INTEGER, lb=lo[g], ub=hi[g]) for g in range(G)] for t in range(T)]
    u = [[m.add_var(var_type=mip.INTEGER, lb=0) for g in range(G)] for t in range(T)]
    v = [[m.add_var(var_type=mip.INTEGER, lb=0) for g in range(G)] for t in range(T)]
    y = {}
    for t, i, j in np.argwhere(rates > 0):
        row = []
        for g in range(G):
            if cap[i, j, g] > 0 and scale[t, g] > 0:
                y[t, i, j, g] = var = m.add_var(lb=0.0, ub=1.0)
                row.append(var)
        if not row:
            raise MelangeError(f"infeasible: every type that could serve {load.grid.label(i, j)} in window {t} "
                               "was tightened to nothing")
        m += mip.xsum(row) == 1
    per_hour = 3600.0
    m.objective = mip.minimize(mip.xsum(cost[g] / per_hour * (W * n[t][g] + startup[g] * u[t][g] + opts.drain_s * v[t][g])
                                        for t in range(T) for g in range(G)))
    loads: dict[tuple[int, int], list] = {}
    for (t, i, j, g), var in y.items():
        loads.setdefault((t, g), []).append(rates[t, i, j] / (cap[i, j, g] * scale[t, g]) * var)
    for t in range(T):
        for g in range(G):
            if (t, g) in loads:
                m += mip.xsum(loads[t, g]) <= n[t][g]
            previous = initial[g] if t == 0 else n[t - 1][g]
            m += n[t][g] - previous == u[t][g] - v[t][g]
            if opts.min_up_windows > 1:
                m += n[t][g] >= mip.xsum(u[s][g] for s in range(max(0, t - opts.min_up_windows + 1), t + 1))
            if opts.static and t > 0:
                m += n[t][g] == n[0][g]
            if opts.availability is not None:
                ahead = int(math.ceil(startup[g] / W))  # later windows' instances already held during t
                m += n[t][g] + mip.xsum(u[s][g] for s in range(t + 1, min(T, t + ahead + 1))) <= int(opts.availability[t, g])
    if opts.max_changes_per_hour is not None:
        per = max(1, int(round(per_hour / W)))
        for h in range(0, T, per):  # the first window's fleet is the start, not a change
            m += mip.xsum(u[t][g] + v[t][g] for t in range(max(h, 1), min(T, h + per)) for g in range(G)) \
                <= opts.max_changes_per_hour
    if known is not None:
        k_counts, k_starts, k_stops, k_share = known
        m.start = ([(n[t][g], float(k_counts[t, g])) for t in range(T) for g in range(G)]
                   + [(u[t][g], float(k_starts[t, g])) for t in range(T) for g in range(G)]
                   + [(v[t][g], float(k_stops[t, g])) for t in range(T) for g in range(G)]
                   + [(var, float(k_share[key])) for key, var in y.items()])
    status = optimize(m, opts.time_limit_s)
    if status not in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE):
        raise MelangeError(f"schedule: {status_name(status)}: no schedule meets the load under these limits "
                           "(availability, changes per hour, min up-time)")
    counts = np.rint([[n[t][g].x for g in range(G)] for t in range(T)]).astype(np.int64)
    starts = np.rint([[u[t][g].x for g in range(G)] for t in range(T)]).astype(np.int64)
    stops = np.rint([[v[t][g].x for g in range(G)] for t in range(T)]).astype(np.int64)
    share = np.zeros((T, *load.grid.shape, G))
    for (t, i, j, g), var in y.items():
        share[t, i, j, g] = var.x if var.x > SHARE_TOLERANCE else 0.0
    total = share.sum(axis=-1, keepdims=True)
    share = np.divide(share, total, out=np.zeros_like(share), where=total > 0)
    return counts, starts, stops, share, status_name(status), float(m.objective_bound)
