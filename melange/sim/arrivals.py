"""Arrival times and request lengths, all drawn up front with numpy from a passed-in Generator.

Drawing everything before the simulation starts keeps the SimPy event callbacks free of randomness
(same seed -> same requests, whatever the router or fast path does) and per-request work O(1).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from melange.core import MelangeError, Workload
from melange.traces import Trace, load_trace

DEFAULT_REQUESTS = 10_000  # when the caller bounds neither requests nor duration
RATE_TOLERANCE = 0.02  # a trace replayed unscaled must run within 2 % of the workload's rate


@dataclass(frozen=True)
class Arrivals:
    """Requests to inject: absolute arrival time (s) and exact lengths (tokens) of each."""

    time_s: np.ndarray  # float, non-decreasing
    input_tokens: np.ndarray  # int64
    output_tokens: np.ndarray  # int64
    bucket_in: np.ndarray  # int64, -1 outside the grid
    bucket_out: np.ndarray  # int64, -1 outside the grid

    def __len__(self) -> int:
        return len(self.time_s)


def interarrival_times(process: str, rate: float, cv: float, n: int,
                       rng: np.random.Generator) -> np.ndarray:
    """`n` gaps (s) of a Poisson or gamma renewal process with mean 1/rate."""
    if process == "poisson":
        return rng.exponential(1.0 / rate, n)
    if process == "gamma":
        shape = 1.0 / cv**2  # CV of a gamma variable is 1/sqrt(shape)
        return rng.gamma(shape, 1.0 / (rate * shape), n)
    raise MelangeError(f"workload.arrival.process: no generator for {process!r}")


def _stream_times(streams: tuple[tuple[float, float], ...], rate: float, requests: int | None,
                  duration_s: float | None, rng: np.random.Generator) -> np.ndarray:
    """Superposed independent gamma streams (share of `rate`, cv), merged in time order."""
    span = duration_s if duration_s is not None else 1.5 * requests / rate + 1.0
    while True:
        parts = [_renewal_times("poisson" if cv == 1.0 else "gamma", rate * share, cv, None, span, rng)
                 for share, cv in streams if share > 0]
        times = np.sort(np.concatenate(parts)) if parts else np.zeros(0)
        if requests is None or len(times) >= requests or duration_s is not None:
            return times if requests is None else times[:requests]
        span *= 2  # a bursty stream left the span short of `requests`: draw a longer one


def _renewal_times(process: str, rate: float, cv: float, requests: int | None,
                   duration_s: float | None, rng: np.random.Generator) -> np.ndarray:
    if requests is not None:
        times = np.cumsum(interarrival_times(process, rate, cv, requests, rng))
        return times if duration_s is None else times[times < duration_s]
    # Bounded by duration only: draw in chunks until past the horizon.
    chunks, last = [], 0.0
    while last < duration_s:
        n = int(rate * duration_s * 1.05) + 100
        times = last + np.cumsum(interarrival_times(process, rate, cv, n, rng))
        chunks.append(times)
        last = float(times[-1])
    times = np.concatenate(chunks)
    return times[times < duration_s]


def _replay_times(trace: Trace, rate: float, scale: bool, requests: int | None,
                  duration_s: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Trace timestamps (scaled so the mean rate is `rate`), looped if more are needed;
    returns (times, row index into the trace)."""
    t = trace.arrival_s
    span = float(t[-1]) if len(t) > 1 else 0.0
    if span <= 0:
        raise MelangeError("trace: arrival times span zero seconds, cannot replay")
    own = (len(t) - 1) / span
    if not scale and abs(own - rate) > RATE_TOLERANCE * rate:
        # Replaying at the trace's own pace would test the plan at a rate it was not solved for.
        raise MelangeError(f"workload.arrival.scale_to_rate: false replays the trace at its own "
                           f"{own:.4g} req/s, but workload.rate is {rate:g}; set rate: {own:.4g} "
                           "or scale_to_rate: true")
    if scale:
        # (n-1) gaps over the span: the trace's own mean rate; stretch time to hit `rate`.
        t = t * ((len(t) - 1) / span) / rate
        span = float(t[-1])
    period = span + span / max(len(t) - 1, 1)  # one mean gap between the end and the next loop
    if requests is None and duration_s is None:
        requests = len(t)
    needed = requests if requests is not None else int(duration_s / period * len(t)) + len(t)
    loops = -(-needed // len(t))
    times = (t[None, :] + period * np.arange(loops)[:, None]).ravel()[:needed]
    rows = np.tile(np.arange(len(t)), loops)[:needed]
    if duration_s is not None:
        keep = times < duration_s
        times, rows = times[keep], rows[keep]
    return times, rows


def _lengths_in_buckets(workload: Workload, flat: np.ndarray, rng: np.random.Generator,
                        base: Path | None) -> tuple[np.ndarray, np.ndarray]:
    """Exact lengths inside each request's bucket: uniform, or the trace's own requests there."""
    grid = workload.grid
    n_out = grid.shape[1]
    i, j = np.divmod(flat, n_out)
    in_edges, out_edges = np.asarray(grid.in_edges), np.asarray(grid.out_edges)
    inputs = rng.integers(in_edges[i], in_edges[i + 1])
    outputs = rng.integers(out_edges[j], out_edges[j + 1])
    if workload.lengths != "trace":
        return inputs, outputs
    trace = load_trace(workload.trace, base)
    ti, tj = grid.bucket_of(trace.input_tokens, trace.output_tokens)
    inside = (ti >= 0) & (tj >= 0)
    tflat = (ti * n_out + tj)[inside]
    order = np.argsort(tflat, kind="stable")
    sorted_in, sorted_out = trace.input_tokens[inside][order], trace.output_tokens[inside][order]
    counts = np.bincount(tflat, minlength=grid.shape[0] * n_out)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    have = counts[flat] > 0  # buckets the trace never visits keep their uniform draw
    pick = starts[flat] + np.floor(rng.random(len(flat)) * np.maximum(counts[flat], 1)).astype(np.int64)
    inputs = np.where(have, sorted_in[np.minimum(pick, len(sorted_in) - 1)], inputs)
    outputs = np.where(have, sorted_out[np.minimum(pick, len(sorted_out) - 1)], outputs)
    return inputs, outputs


def make_arrivals(workload: Workload, rng: np.random.Generator, *, requests: int | None = None,
                  duration_s: float | None = None, base: Path | None = None) -> Arrivals:
    """All requests of a run: arrivals bounded by `requests` and/or `duration_s` (default
    10,000 requests, or one pass over the trace when replaying it)."""
    arrival = workload.arrival
    if requests is not None and requests < 0:
        raise MelangeError("simulate: requests must be >= 0")
    if duration_s is not None and duration_s <= 0:
        raise MelangeError("simulate: duration must be > 0")
    grid = workload.grid
    if arrival.process == "trace":
        trace = load_trace(arrival.trace or workload.trace, base)
        if trace.arrival_s is None:
            raise MelangeError("workload.arrival.trace: trace has no arrival-time column")
        times, rows = _replay_times(trace, workload.rate, arrival.scale_to_rate, requests, duration_s)
        inputs, outputs = trace.input_tokens[rows], trace.output_tokens[rows]
        bi, bo = grid.bucket_of(inputs, outputs)
    else:
        if requests is None and duration_s is None:
            requests = DEFAULT_REQUESTS
        if arrival.process == "streams":
            times = _stream_times(arrival.streams, workload.rate, requests, duration_s, rng)
        else:
            times = _renewal_times(arrival.process, workload.rate, arrival.cv, requests, duration_s, rng)
        p = np.asarray(workload.distribution, dtype=float).ravel()
        flat = rng.choice(len(p), size=len(times), p=p / p.sum())
        inputs, outputs = _lengths_in_buckets(workload, flat, rng, base)
        bi, bo = np.divmod(flat, grid.shape[1])
    return Arrivals(np.asarray(times, dtype=float), np.asarray(inputs, dtype=np.int64),
                    np.asarray(outputs, dtype=np.int64), np.asarray(bi, dtype=np.int64),
                    np.asarray(bo, dtype=np.int64))


def window_arrivals(windows: list[Workload], window_s: float, first: int, seed: int,
                    base: Path | None = None) -> tuple[Arrivals, np.ndarray]:
    """Arrivals of consecutive windows (window `first + k` spans [(first+k)·window_s, +window_s)),
    each drawn from its own workload with its own generator seeded (seed, window): a window's
    requests are the same whichever span it is replayed in (a split replay sees what one whole
    replay sees). Also returns each request's uniform draw for routing, from the same generator."""
    parts, draws = [], []
    for k, w in enumerate(windows):
        t = first + k
        rng = np.random.default_rng([seed, t])
        if w.rate <= 0:
            continue
        a = make_arrivals(w, rng, duration_s=window_s, base=base)
        parts.append(Arrivals(a.time_s + t * window_s, a.input_tokens, a.output_tokens, a.bucket_in, a.bucket_out))
        draws.append(rng.random(len(a)))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return Arrivals(np.zeros(0), empty, empty, empty, empty), np.zeros(0)
    fields = zip(*[(p.time_s, p.input_tokens, p.output_tokens, p.bucket_in, p.bucket_out) for p in parts])
    return Arrivals(*(np.concatenate(f) for f in fields)), np.concatenate(draws)
