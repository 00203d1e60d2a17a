"""Load over time: traffic that changes from one time window to the next.

A `Load` holds, for each window of `window_s` seconds, the request rate, the burstiness of the
arrivals (the coefficient of variation of inter-arrival gaps, 1 = Poisson) and the share of
requests per (input, output) length bucket. `Load.window(t, template)` turns one window into the
`Workload` the planner and the simulator take.

Loads come from a trace with arrival times (`load_from_trace`), from a table of rates per window
(`load_from_table`), or from a JSON load document (`read_load`); built-in ones live in
`melange/scenarios/loads/` (see the README there for their sources) and can be named by stem.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from melange.core import Arrival, BucketGrid, MelangeError, Workload
from melange.files import atomic_write_text, read_document, read_text
from melange.traces import Trace
from melange.units import parse_duration

BUILTIN_LOADS = Path(__file__).parent / "scenarios" / "loads"
MIN_WINDOW_REQUESTS = 50  # requests inside the grid a window needs for its own length histogram
MIN_CV = 0.01  # evenly spaced arrivals measure cv 0; gamma needs cv > 0, and 0.01 is as regular
SHARE_TOLERANCE = 1e-3  # a busy window's shares must sum to 1 within this (files round to 1e-6)


@dataclass(frozen=True)
class Load:
    """Traffic that changes over time: one workload per window of `window_s` seconds."""

    name: str
    grid: BucketGrid
    window_s: float
    rate: np.ndarray  # (T,) req/s per window, >= 0
    cv: np.ndarray  # (T,) coefficient of variation of inter-arrival gaps (1 = Poisson), > 0
    distribution: np.ndarray  # (T, n_in, n_out) share of requests per bucket; sums to 1 where rate > 0
    attribution: str = ""
    outside_grid: np.ndarray | None = None  # (T,) share of the window's requests left out of the grid
    streams: np.ndarray | None = None  # (T, K, 2): K independent streams per window, (share of rate, cv)

    def __post_init__(self) -> None:
        # Arrays are stored as float copies so that a caller's later edits cannot change a load.
        for key in ("rate", "cv", "distribution", "outside_grid", "streams"):
            value = getattr(self, key)
            if value is not None:
                try:
                    array = np.array(value, dtype=float)
                except (TypeError, ValueError):
                    raise MelangeError(f"load.{key}: must be numbers") from None
                array.flags.writeable = False
                object.__setattr__(self, key, array)
        number = isinstance(self.window_s, (int, float, np.integer, np.floating))
        if not number or isinstance(self.window_s, bool) or not math.isfinite(self.window_s) or self.window_s <= 0:
            raise MelangeError(f"load.window_s: must be a number of seconds > 0, got {self.window_s!r}")
        object.__setattr__(self, "window_s", float(self.window_s))
        if self.rate.ndim != 1 or len(self.rate) == 0:
            raise MelangeError("load.rate: must be a list of one rate per window (at least one), "
                               f"got shape {self.rate.shape}")
        windows = len(self.rate)
        expect = {"cv": (windows,), "distribution": (windows, *self.grid.shape), "outside_grid": (windows,)}
        if self.streams is not None:
            expect["streams"] = (windows, self.streams.shape[1] if self.streams.ndim == 3 else -1, 2)
        for key, shape in expect.items():
            value = getattr(self, key)
            if value is not None and value.shape != shape:
                raise MelangeError(f"load.{key}: shape {value.shape} does not match {windows} windows "
                                   f"on a {self.grid.shape[0]}x{self.grid.shape[1]} grid (expected {shape})")
        self._check_values()

    def _check_values(self) -> None:
        """Every number finite and in range; each busy window's shares sum to 1."""
        for key in ("rate", "cv", "distribution", "outside_grid", "streams"):
            value = getattr(self, key)
            if value is not None and not np.all(np.isfinite(value)):
                bad = tuple(int(k) for k in np.argwhere(~np.isfinite(value))[0])
                raise MelangeError(f"load.{key}[{bad[0]}]: must be a finite number")
        checks = (("rate", self.rate < 0, "must be >= 0"), ("cv", self.cv <= 0, "must be > 0"),
                  ("distribution", (self.distribution < 0).any(axis=(1, 2)), "shares must be >= 0"))
        if self.outside_grid is not None:
            checks += (("outside_grid", (self.outside_grid < 0) | (self.outside_grid > 1), "must be in [0, 1]"),)
        for key, bad, what in checks:
            if bad.any():
                raise MelangeError(f"load.{key}[{int(np.argmax(bad))}]: {what}")
        if self.streams is not None:
            share, cv = self.streams[..., 0], self.streams[..., 1]
            off = (self.rate > 0) & (np.abs(share.sum(axis=1) - 1.0) > SHARE_TOLERANCE)
            if (share < 0).any() or ((share > 0) & (cv <= 0)).any() or off.any():
                t = int(np.argmax((share < 0).any(axis=1) | ((share > 0) & (cv <= 0)).any(axis=1) | off))
                raise MelangeError(f"load.streams[{t}]: shares must be >= 0 and sum to 1, each busy stream's cv > 0")
        sums = self.distribution.sum(axis=(1, 2))
        off = (self.rate > 0) & (np.abs(sums - 1.0) > SHARE_TOLERANCE)
        if off.any():
            t = int(np.argmax(off))
            raise MelangeError(f"load.distribution[{t}]: shares sum to {sums[t]:.6g}, must sum to 1 "
                               f"(window {t} has {self.rate[t]:.6g} req/s)")

    @property
    def windows(self) -> int:
        """Number of windows (T)."""
        return len(self.rate)

    @property
    def start_s(self) -> np.ndarray:
        """Start of each window, seconds from the load's start."""
        return np.arange(self.windows) * self.window_s

    @property
    def duration_s(self) -> float:
        """Length of the whole load (s)."""
        return self.windows * self.window_s

    @property
    def mean_rate(self) -> float:
        """Mean request rate over the whole load (req/s); every window has the same length."""
        return float(self.rate.mean())

    @property
    def peak_rate(self) -> float:
        """Highest window rate (req/s)."""
        return float(self.rate.max())

    def mean_distribution(self) -> np.ndarray:
        """Share of all the load's requests per bucket (windows weighted by their rates)."""
        weights = self.rate if self.rate.sum() > 0 else np.ones(self.windows)
        mix = np.tensordot(weights, self.distribution, axes=1)
        return mix / mix.sum() if mix.sum() > 0 else np.full(self.grid.shape, 1.0 / mix.size)

    def window(self, t: int, template: Workload) -> Workload:
        """Window `t` as a Workload: its rate, length mix and burstiness; lengths and trace from
        `template`."""
        if not isinstance(t, (int, np.integer)) or not 0 <= t < self.windows:
            raise MelangeError(f"load.window: {t!r} is not a window index in 0..{self.windows - 1}")
        distribution = self.distribution[t]
        if distribution.sum() <= 0:
            # An idle window has no length mix of its own, but a Workload's shares must sum to 1.
            distribution = self.mean_distribution()
        cv = float(self.cv[t])
        arrival = Arrival("poisson") if cv == 1.0 else Arrival("gamma", cv=cv)
        if self.streams is not None and self.rate[t] > 0:
            arrival = Arrival("streams", cv=cv, streams=tuple((float(a), float(b)) for a, b in self.streams[t] if a > 0))
        return Workload(self.grid, np.array(distribution), float(self.rate[t]), arrival,
                        lengths=template.lengths, trace=template.trace)

    def span(self, first: int, count: int) -> Load:
        """Windows first .. first + count - 1 as a load of their own."""
        if not (isinstance(first, (int, np.integer)) and isinstance(count, (int, np.integer))
                and first >= 0 and count >= 1 and first + count <= self.windows):
            raise MelangeError(f"--windows: {first!r}+{count!r} is not a range of the load's {self.windows} "
                               f"windows (first in 0..{self.windows - 1}, count >= 1)")
        part = slice(first, first + count)
        outside = self.outside_grid[part] if self.outside_grid is not None else None
        return replace(self, rate=self.rate[part], cv=self.cv[part], distribution=self.distribution[part],
                       outside_grid=outside, streams=None if self.streams is None else self.streams[part])

    def on_grid(self, grid: BucketGrid) -> Load:
        """The load on a coarser `grid` whose edges are among this one's: buckets merged, and the
        requests past the new grid's last edges left out (rate lowered, `outside_grid` raised), as
        the built-in scenarios leave out what their model's context cannot hold."""
        if (grid.in_edges, grid.out_edges) == (self.grid.in_edges, self.grid.out_edges):
            return self
        maps = []
        for name, ours, theirs in (("input_edges", self.grid.in_edges, grid.in_edges),
                                   ("output_edges", self.grid.out_edges, grid.out_edges)):
            if not set(theirs) <= set(ours):
                raise MelangeError(f"load.grid: the scenario's {name} {list(theirs)} are not among the load's "
                                   f"{list(ours)} (a load can only be merged onto a coarser grid)")
            # our bucket k lies in their bucket searchsorted(...) - 1, or outside (-1)
            where = np.searchsorted(theirs, ours[:-1], side="right") - 1
            maps.append(np.where((where >= 0) & (np.asarray(ours[1:]) <= theirs[-1]), where, -1))
        shares = np.zeros((self.windows, *grid.shape))
        for i, k in enumerate(maps[0]):
            for j, m in enumerate(maps[1]):
                if k >= 0 and m >= 0:
                    shares[:, k, m] += self.distribution[:, i, j]
        inside = shares.sum(axis=(1, 2))
        kept = np.where(self.rate > 0, inside, 1.0)
        shares = np.where(inside[:, None, None] > 0, shares / np.where(inside > 0, inside, 1.0)[:, None, None], 0.0)
        rate = np.where(inside > 0, self.rate * kept, 0.0)
        before = self.outside_grid if self.outside_grid is not None else np.zeros(self.windows)
        outside = 1.0 - (1.0 - before) * kept
        return replace(self, grid=grid, rate=rate, distribution=shares, outside_grid=outside)

    def scaled(self, factor: float) -> Load:
        """The same load with every window's rate multiplied by `factor`, its bursts in proportion."""
        if not isinstance(factor, (int, float)) or not math.isfinite(factor) or factor < 0:
            raise MelangeError(f"--scale (schedule.scale): {factor!r} must be a number >= 0")
        # Each client's bursts shrink with its rate (fewer of its users, not smaller gaps), so the
        # excess dispersion over Poisson, cv^2 - 1 of a renewal process, scales with the rate:
        # the bursts keep their size relative to the traffic, and so to the fleet serving it.
        def cv(values: np.ndarray) -> np.ndarray:
            return np.sqrt(np.maximum(1.0 + (values**2 - 1.0) * float(factor), MIN_CV**2)) if factor > 0 else values

        streams = None if self.streams is None else np.stack([self.streams[..., 0], cv(self.streams[..., 1])], axis=-1)
        return replace(self, rate=self.rate * float(factor), cv=cv(self.cv), streams=streams)


def parse_window(text: str) -> float:
    """'10m', '600s', '600', '1h', '90s' -> seconds (a bare number is seconds)."""
    return parse_duration(text, "--window", bare="s")


def _whole_trace_histogram(trace: Trace, grid: BucketGrid) -> np.ndarray:
    """The whole trace's share of requests per bucket."""
    return grid.histogram(trace.input_tokens, trace.output_tokens)


def load_from_trace(trace: Trace, grid: BucketGrid, window_s: float, name: str, attribution: str = "") -> Load:
    """A load from a trace with arrival times: each window's rate, cv and length mix."""
    if trace.arrival_s is None:
        raise MelangeError("trace: has no arrival times (a column arrival_s, arrived_at or timestamp); "
                           "a load needs them")
    if not math.isfinite(window_s) or window_s <= 0:
        raise MelangeError(f"--window: must be > 0 s, got {window_s!r}")
    arrivals = np.asarray(trace.arrival_s, dtype=float)
    arrivals = arrivals - arrivals[0]
    span = float(arrivals[-1])
    # The trace runs from its first arrival to its last, so the last window is usually cut short
    # (an arrival exactly at its end belongs to it, not to a window of length 0).
    covering = max(1, math.ceil(span / window_s))
    index = np.minimum((arrivals // window_s).astype(np.int64), covering - 1)
    lengths = np.full(covering, float(window_s))
    lengths[-1] = min(float(window_s), span - (covering - 1) * window_s)
    # Under half a window, a rate measured over the tail is too noisy to plan for: leave it out.
    count = covering if lengths[-1] >= window_s / 2 else covering - 1
    if count == 0:
        raise MelangeError(f"--window: {window_s:g} s is more than twice the trace's span of {span:g} s "
                           "(no window would be at least half full)")
    i, j = grid.bucket_of(trace.input_tokens, trace.output_tokens)
    inside = (i >= 0) & (j >= 0)
    overall = _whole_trace_histogram(trace, grid)
    rate, cv = np.zeros(count), np.ones(count)
    distribution = np.zeros((count, *grid.shape))
    outside = np.zeros(count)
    for t in range(count):
        mine = index == t
        n = int(mine.sum())
        rate[t] = n / lengths[t]
        if n >= 3:  # two gaps at least, else std/mean says nothing
            gaps = np.diff(arrivals[mine])
            if gaps.mean() > 0:
                cv[t] = max(float(gaps.std() / gaps.mean()), MIN_CV)
        kept = mine & inside
        if n:
            outside[t] = 1.0 - kept.sum() / n
        if kept.sum() >= MIN_WINDOW_REQUESTS:
            counts = np.zeros(grid.shape)
            np.add.at(counts, (i[kept], j[kept]), 1)
            distribution[t] = counts / counts.sum()
        else:
            # A few dozen requests leave most buckets empty by chance, and the planner would buy
            # no capacity for them; the whole trace's mix is the better estimate of that window's.
            distribution[t] = overall
    return Load(name, grid, float(window_s), rate, cv, distribution, attribution, outside)


def load_from_table(path: str | Path, grid: BucketGrid, distribution: np.ndarray, name: str) -> Load:
    """A load from a CSV of `start_s, rate[, cv]` rows (evenly spaced windows from 0), with one
    length mix for every window."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise MelangeError(f"--table: file '{path}' not found")
    try:
        frame = pd.read_csv(io.StringIO(read_text(path)))
    except MelangeError:
        raise
    except Exception as exc:  # pandas raises many types for malformed CSV
        raise MelangeError(f"--table {path.name}: cannot read CSV ({exc.__class__.__name__})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    for column in ("start_s", "rate"):
        if column not in frame.columns:
            raise MelangeError(f"--table {path.name}: missing column '{column}' "
                               "(columns: start_s, rate, optional cv)")
    columns = {}
    for column in ("start_s", "rate", "cv"):
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        if len(values) == 0 or not np.all(np.isfinite(values)):
            raise MelangeError(f"--table {path.name}: column '{column}' must hold a number on every row")
        columns[column] = values
    start = columns["start_s"]
    if len(start) < 2:
        raise MelangeError(f"--table {path.name}: needs at least 2 rows (their spacing is the window)")
    steps = np.diff(start)
    window_s = float(steps[0])
    if start[0] != 0 or window_s <= 0 or not np.allclose(steps, window_s, rtol=1e-9, atol=1e-6):
        raise MelangeError(f"--table {path.name}: start_s must start at 0 and grow in equal steps "
                           f"(got {start[:3].tolist()}...)")
    distribution = np.asarray(distribution, dtype=float)
    if distribution.shape != grid.shape:
        raise MelangeError(f"--workload: distribution shape {distribution.shape} is not the grid's {grid.shape}")
    cv = columns.get("cv", np.ones(len(start)))
    shares = np.broadcast_to(distribution, (len(start), *grid.shape))
    return Load(name, grid, window_s, columns["rate"], cv, shares)


def _resolve_load_path(name: str | Path) -> Path:
    """A load file: as given, or a built-in one named by stem."""
    for path in (Path(name), BUILTIN_LOADS / str(name), BUILTIN_LOADS / f"{name}.json"):
        if path.is_file():
            return path
    builtin = ", ".join(builtin_loads())
    raise MelangeError(f"load: '{name}' not found (built-in loads: {builtin})")


def builtin_loads() -> list[str]:
    """Names (file stems) of the built-in loads."""
    return sorted(p.stem for p in BUILTIN_LOADS.glob("*.json"))


def _array(doc: dict, key: str, required: bool = True) -> np.ndarray | None:
    """doc[key] as a float array, or a one-line error naming `load.key`."""
    if key not in doc:
        if required:
            raise MelangeError(f"load.{key}: missing")
        return None
    try:
        return np.asarray(doc[key], dtype=float)
    except (TypeError, ValueError):
        raise MelangeError(f"load.{key}: must be a list of numbers") from None


def read_load(name: str | Path, grid: BucketGrid | None = None) -> Load:
    """A load document (path or built-in name); given `grid`, merged onto it (`Load.on_grid`)."""
    path = _resolve_load_path(name)
    doc = read_document(path)
    g = doc.get("grid")
    if not (isinstance(g, dict) and isinstance(g.get("input_edges"), list)
            and isinstance(g.get("output_edges"), list)):
        raise MelangeError(f"load.grid: {path.name} needs grid: {{input_edges: [...], output_edges: [...]}}")
    try:
        file_grid = BucketGrid(tuple(g["input_edges"]), tuple(g["output_edges"]))
    except MelangeError as exc:
        raise MelangeError(f"load.{exc}") from None
    except TypeError:
        raise MelangeError("load.grid: edges must be whole numbers of tokens") from None
    window_s = doc.get("window_s")
    if isinstance(window_s, bool) or not isinstance(window_s, (int, float)):
        raise MelangeError("load.window_s: must be a number of seconds")
    rate = _array(doc, "rate")
    cv = _array(doc, "cv")
    outside = _array(doc, "outside_grid", required=False)
    streams = _array(doc, "streams", required=False)
    if streams is not None:
        if streams.ndim != 3 or streams.shape[0] != len(rate) or streams.shape[2] != 2:
            raise MelangeError(f"load.streams: must be one list of [share, cv] pairs per window ({len(rate)} windows)")
        share = streams[..., 0]  # rounded to 6 decimals in the file: renormalise
        total = share.sum(axis=1, keepdims=True)
        share = np.where(total > 0, share / np.where(total > 0, total, 1.0), share)
        streams = np.stack([share, streams[..., 1]], axis=-1)
    flat = _array(doc, "distribution")
    n_in, n_out = file_grid.shape
    if rate.ndim != 1 or flat.ndim != 2 or flat.shape != (len(rate), n_in * n_out):
        raise MelangeError(f"load.distribution: must be {len(rate)} rows (one per window) of {n_in * n_out} "
                           f"shares ({n_in}x{n_out} buckets, row by row), got shape {flat.shape}")
    shares = flat.reshape(len(rate), n_in, n_out)
    sums = shares.sum(axis=(1, 2))
    # The file rounds shares to 6 decimals; rescale each row so that it sums to 1 exactly again.
    shares = np.where(sums[:, None, None] > 0, shares / np.where(sums > 0, sums, 1.0)[:, None, None], shares)
    attribution = doc.get("attribution", "")
    load = Load(str(doc.get("name", path.stem)), file_grid, float(window_s), rate, cv, shares,
                str(attribution) if attribution is not None else "", outside, streams)
    return load if grid is None else load.on_grid(grid)


def _significant(value: float, digits: int = 6) -> float | int:
    """`value` to `digits` significant digits; a whole number as an int (shorter JSON)."""
    rounded = float(f"{value:.{digits}g}")
    return int(rounded) if rounded.is_integer() else rounded


def _share(value: float) -> float | int:
    """A share to 6 decimals; 0 and 1 as ints (most buckets are empty: keeps files small)."""
    rounded = round(float(value), 6)
    return int(rounded) if rounded.is_integer() else rounded


def load_document(load: Load) -> dict:
    """The JSON form of a load (what `read_load` reads)."""
    doc = {"name": load.name, "attribution": load.attribution, "window_s": _significant(load.window_s, 12),
           "grid": {"input_edges": list(load.grid.in_edges), "output_edges": list(load.grid.out_edges)},
           "rate": [_significant(v) for v in load.rate], "cv": [_significant(v) for v in load.cv]}
    if load.outside_grid is not None:
        doc["outside_grid"] = [_share(v) for v in load.outside_grid]
    if load.streams is not None:
        doc["streams"] = [[[_share(a), _significant(b)] for a, b in row] for row in load.streams]
    doc["distribution"] = [[_share(v) for v in row.ravel()] for row in load.distribution]
    return doc


def write_load(path: str | Path, load: Load) -> Path:
    """Write a load document as JSON, atomically: compact, one key (and one window's shares) a
    line, so that a diff of two versions shows which windows changed."""
    doc = load_document(load)
    compact = {"separators": (",", ":"), "ensure_ascii": False}
    lines = [f"{json.dumps(key)}:{json.dumps(value, **compact)}"
             for key, value in doc.items() if key != "distribution"]
    rows = ",\n".join(json.dumps(row, **compact) for row in doc["distribution"])
    text = "{" + ",\n".join(lines) + ',\n"distribution":[\n' + rows + "\n]}\n"
    return atomic_write_text(path, text)
