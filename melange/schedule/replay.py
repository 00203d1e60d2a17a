"""Proof by replay: a horizon of time-varying traffic through a changing fleet, judged per window.

Every window's arrivals follow its own rate, arrival law (gamma with the window's CV) and length
mix, drawn from a generator seeded by (seed, window), so the same window gets the same requests
whichever span it is replayed in. The fleet is a `Fleet`: when each instance was asked for (it is
paid from then), when it starts serving (after its type's start-up) and when it stops (it drains:
nothing in flight is dropped, and it is paid until its last request is done).

Each window is judged by the one acceptance rule (`acceptance.judge`: stable, enough counted
requests, attainment at least the target; the paper's averaged rule where the SLO is `mean_itl`)
over the requests that arrive in it; a window with too few requests to judge is reported, not
failed. A long horizon is split into parts of consecutive windows that run apart (process pool
or Ray): a part starts `warmup_s` before its first window on the fleet serving then, with the
previous window's traffic, and judges only its own windows.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from melange.acceptance import DEFAULT_RULE, judge, wilson_interval
from melange.core import MelangeError
from melange.files import atomic_write_text
from melange.load import Load
from melange.metrics import slo_means, to_frame
from melange.scenario import Scenario
from melange.schedule.milp import Schedule
from melange.sim.arrivals import window_arrivals
from melange.sim.timeline import Timeline, TimelineSimulation

# A part replays this much of the window before its first one (at most that whole window): queues
# built by a burst carry over for minutes, and with 2 minutes 2 of 12 windows of a real-rate ServeGen
# span came out just outside the single-process replay's interval.
DEFAULT_WARMUP_S = 600.0
LOOKBACK_S = 600.0  # requests this long before a window still count toward its number in system
WINDOW_COLUMNS = ["window", "start_s", "rate", "requests", "met", "attainment", "lo", "hi", "judged",
                  "held", "reason", "mean_itl_ms", "serving"]


@dataclass(frozen=True)
class Fleet:
    """A fleet over time, as the replay runs it: a `Timeline` and when each instance was asked for."""

    timeline: Timeline
    asked_s: np.ndarray  # (I,) paid from this time
    cost_per_hour: np.ndarray  # (G,) $/h per instance of each type
    gpus_per_instance: np.ndarray  # (G,)

    @property
    def changes(self) -> int:
        """Instances started and stopped (the first fleet's count as starts)."""
        return int(len(self.asked_s) + np.isfinite(self.timeline.stop_s).sum())


def fleet_of_schedule(s: Schedule, gpus_per_instance: np.ndarray | None = None) -> Fleet:
    """The instances a schedule implies: each start asked for its type's start-up before its window,
    each stop taking the newest instance of the type (last in, first out)."""
    W = s.window_s
    kind, ready, stop, asked = [], [], [], []
    for g, name in enumerate(s.gpus):
        alive: list[int] = []

        def start(at: float, paid_from: float) -> None:
            alive.append(len(kind))
            kind.append(g), ready.append(at), stop.append(np.inf), asked.append(paid_from)

        for _ in range(s.initial.get(name, 0)):
            start(0.0, 0.0)
        for t in range(s.windows):
            for _ in range(int(s.stops[t, g])):
                stop[alive.pop()] = t * W
            for _ in range(int(s.starts[t, g])):
                start(t * W, t * W - s.startup_s[g])
    timeline = Timeline(list(s.gpus), np.array(kind, dtype=np.int64), np.array(ready, dtype=float),
                        np.array(stop, dtype=float), np.arange(s.windows) * W, s.share)
    per = np.ones(len(s.gpus)) if gpus_per_instance is None else np.asarray(gpus_per_instance, dtype=float)
    return Fleet(timeline, np.array(asked, dtype=float), np.asarray(s.cost_per_hour, dtype=float), per)


@dataclass
class Part:
    """What one part of a replay found: its windows' verdicts and its instances' last finishes."""

    windows: pd.DataFrame
    last_finish: np.ndarray  # (I,) -inf where the part gave an instance nothing
    requests: int
    wall_s: float


@dataclass
class Replay:
    """A whole replay: per-window verdicts, and what the fleet cost as run."""

    windows: pd.DataFrame
    cost: float  # $ paid: from asking for each instance to its drain (or the horizon's end)
    gpu_hours: float
    changes: int
    requests: int
    wall_s: float

    @property
    def judged(self) -> pd.DataFrame:
        """Windows with enough requests to judge."""
        return self.windows[self.windows["judged"]]

    @property
    def held(self) -> bool:
        """Every judged window held."""
        return bool(self.judged["held"].all())

    @property
    def worst_attainment(self) -> float | None:
        """Lowest attainment of a judged window (None: none judged)."""
        return None if self.judged.empty else float(self.judged["attainment"].min())

    @property
    def attainment(self) -> float:
        """Share of all replayed requests that met the SLO."""
        n = int(self.windows["requests"].sum())
        return float(self.windows["met"].sum()) / n if n else float("nan")

    def summary(self) -> dict:
        """JSON-ready figures."""
        failed = self.judged[~self.judged["held"]]
        return {"cost": round(self.cost, 4), "gpu_hours": round(self.gpu_hours, 4), "changes": self.changes,
                "requests": self.requests, "attainment": round(self.attainment, 6),
                "worst_window_attainment": self.worst_attainment, "held": self.held,
                "windows_judged": int(len(self.judged)), "windows_failed": int(len(failed)),
                "failed_windows": failed["window"].astype(int).tolist()[:20], "wall_s": round(self.wall_s, 2)}


def judge_windows(sc: Scenario, load: Load, frame: pd.DataFrame, windows: range,
                  serving: Callable[[float], np.ndarray]) -> pd.DataFrame:
    """One row per window of `windows`: its requests judged by the acceptance rule."""
    slo, W = sc.slo, load.window_s
    arrival = frame["arrival_s"].to_numpy(float)
    finish = np.where(frame["error"].isna(), arrival + frame["e2e_s"].to_numpy(float), arrival)
    met = frame["slo_met"].to_numpy(bool)
    rows = []
    for t in windows:
        t0, t1 = t * W, (t + 1) * W
        lo_i, hi_i = np.searchsorted(arrival, [t0 - LOOKBACK_S, t1], side="left")
        a, f, m = arrival[lo_i:hi_i], finish[lo_i:hi_i], met[lo_i:hi_i]
        means = slo_means(frame.iloc[lo_i:hi_i], slo)
        verdict = judge(a, f, m, slo.attainment, warmup_s=t0, end_s=t1, rule=DEFAULT_RULE, means=means)
        counted = (a >= t0) & (a < t1)
        n, k = int(counted.sum()), int(m[counted].sum())
        itl = means.averages(counted)[0] if means is not None else None
        low, high = wilson_interval(k, n)
        too_few = verdict.reason.startswith("too few")
        rows.append({"window": t, "start_s": t0, "rate": float(load.rate[t]), "requests": n, "met": k,
                     "attainment": k / n if n else float("nan"), "lo": low, "hi": high, "judged": not too_few,
                     "held": verdict.passed or too_few, "reason": verdict.reason,
                     "mean_itl_ms": None if itl is None else itl * 1000.0,
                     "serving": " ".join(str(int(c)) for c in serving(t0))})
    return pd.DataFrame(rows, columns=WINDOW_COLUMNS)


def replay_part(sc: Scenario, load: Load, fleet: Fleet, seed: int, first: int, count: int,
                warmup_s: float = DEFAULT_WARMUP_S, progress: Callable[[float], None] | None = None) -> Part:
    """Replay windows first..first+count-1 (after `warmup_s` of the window before) and judge them."""
    start = time.perf_counter()
    lead = 1 if first > 0 and warmup_s > 0 else 0
    span = range(first - lead, first + count)
    workloads = [load.window(t, sc.workload) for t in span]
    arrivals, draws = window_arrivals(workloads, load.window_s, span.start, seed)
    if lead:  # only the warm-up's last seconds of the previous window
        keep = arrivals.time_s >= first * load.window_s - warmup_s
        arrivals = type(arrivals)(*(getattr(arrivals, f)[keep] for f in ("time_s", "input_tokens", "output_tokens",
                                                                          "bucket_in", "bucket_out")))
        draws = draws[keep]
    sim = TimelineSimulation(fleet.timeline, arrivals, sc.workload, sc.step_models, sc.engines,
                             np.random.default_rng([seed, first, 1]), router=sc.simulation.router,
                             progress=progress, draws=draws)
    sim.run()
    frame = to_frame(sim.records(), sc.slo)
    windows = judge_windows(sc, load, frame, range(first, first + count), fleet.timeline.serving)
    return Part(windows, sim.last_finish_s(), len(arrivals), time.perf_counter() - start)


def _part_job(args: tuple) -> Part:
    """A part on a worker (module level: pickled to the pool)."""
    sc, load, fleet, seed, first, count, warmup_s = args
    return replay_part(sc, load, fleet, seed, first, count, warmup_s)


def parts_of(windows: int, parts: int) -> list[tuple[int, int]]:
    """(first, count) of `parts` near-equal runs of consecutive windows."""
    parts = max(1, min(parts, windows))
    edges = np.linspace(0, windows, parts + 1).round().astype(int)
    return [(int(a), int(b - a)) for a, b in zip(edges, edges[1:]) if b > a]


def part_key(sc: Scenario, load: Load, fleet: Fleet, seed: int, first: int, count: int, warmup_s: float) -> str:
    """What decides a part's result: the scenario, the load's windows, the fleet, the seed, the code."""
    from melange.keys import RESULT_CODE_FILES, code_digest, digest
    from melange.validate.store import inputs_hash

    return digest({"scenario": inputs_hash(sc), "load": load, "fleet": fleet, "seed": seed, "first": first,
                   "count": count, "warmup_s": warmup_s,
                   "code": code_digest(RESULT_CODE_FILES + ("sim/*.py", "schedule/*.py", "load.py", "acceptance.py"))}, 24)


def _save_part(path: Path, part: Part) -> None:
    """A finished part, written atomically (an interrupted replay resumes from it)."""
    doc = {"windows": json.loads(part.windows.to_json(orient="records")), "requests": part.requests,
           "wall_s": part.wall_s, "last_finish": [None if not np.isfinite(v) else float(v) for v in part.last_finish]}
    atomic_write_text(path, json.dumps(doc))


def _read_part(path: Path) -> Part | None:
    """A part saved by `_save_part` (None if unreadable: it is simply replayed again)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        windows = pd.DataFrame(doc["windows"], columns=WINDOW_COLUMNS)
        last = np.array([-np.inf if v is None else v for v in doc["last_finish"]], dtype=float)
        return Part(windows, last, int(doc["requests"]), float(doc["wall_s"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def replay(sc: Scenario, load: Load, fleet: Fleet, seed: int, *, parts: int = 1, executor=None,
           warmup_s: float = DEFAULT_WARMUP_S, on_part: Callable[[Part], None] | None = None,
           cache: Path | None = None) -> Replay:
    """Replay the whole load through the fleet, in `parts` run apart on `executor` (default here).
    With `cache` (a directory), each finished part is kept there and reused by a later call."""
    if sc.slo is None:
        raise MelangeError("slo: required to judge a replay")
    start = time.perf_counter()
    jobs, done, paths = [], [], {}
    for a, n in parts_of(load.windows, parts):
        path = None if cache is None else Path(cache) / f"part-{part_key(sc, load, fleet, seed, a, n, warmup_s)}.json"
        found = None if path is None or not path.is_file() else _read_part(path)
        if found is not None:
            done.append(found)
            continue
        paths[a] = path
        jobs.append((sc, load, fleet, seed, a, n, warmup_s))
    results = (_part_job(j) for j in jobs) if executor is None else executor.map(_part_job, jobs)
    with closing(iter(results)) as it:
        for part in it:
            done.append(part)
            path = paths.get(int(part.windows["window"].min())) if len(part.windows) else None
            if path is not None:
                _save_part(path, part)
            if on_part is not None:
                on_part(part)
    windows = pd.concat([p.windows for p in done]).sort_values("window").reset_index(drop=True)
    last = np.max([p.last_finish for p in done], axis=0) if done else np.zeros(0)
    cost, hours = paid(fleet, last, load.duration_s)
    return Replay(windows, cost, hours, fleet.changes, sum(p.requests for p in done), time.perf_counter() - start)


def paid(fleet: Fleet, last_finish: np.ndarray, horizon_s: float) -> tuple[float, float]:
    """($, GPU-hours) paid: each instance from when it was asked for to the later of its stop and its
    last request's end; one never stopped, to the horizon's end (or its last request's, if later)."""
    tl = fleet.timeline
    stop = np.where(np.isfinite(tl.stop_s), tl.stop_s, horizon_s)
    last = np.where(np.isnan(last_finish), horizon_s, last_finish)
    end = np.maximum(stop, last)
    hours = np.maximum(end - fleet.asked_s, 0.0) / 3600.0
    return float(np.sum(hours * fleet.cost_per_hour[tl.kind])), float(np.sum(hours * fleet.gpus_per_instance[tl.kind]))


def agreement(whole: pd.DataFrame, split: pd.DataFrame) -> float:
    """Share of judged windows where the split replay's attainment lies in the whole one's 95 %
    interval and vice versa."""
    merged = whole.merge(split, on="window", suffixes=("_a", "_b"))
    merged = merged[merged["judged_a"] & merged["judged_b"]]
    if merged.empty:
        return math.nan
    inside = ((merged["attainment_b"] >= merged["lo_a"]) & (merged["attainment_b"] <= merged["hi_a"])
              | (merged["attainment_a"] >= merged["lo_b"]) & (merged["attainment_a"] <= merged["hi_b"]))
    return float(inside.mean())
