"""The one rule that says whether a load test at some rate passed: stable, enough requests, SLO met.

Sim-profiles (`perf/profile_sim.py`), the measured profiler (`profiler/`) and plan confirmation
(`validate.py`) all judge a run with `judge`, so a profile's max rate means the same thing however
it was made. The run is described by per-request arrays, so simulated and measured runs feed it
alike:

- `arrival_s`: when each request was sent (the *scheduled* time for a load generator), from t=0;
- `finish_s`: when it left the system (completed or failed); NaN if still in flight at the end;
- `met`: whether it met the SLO (failed and unfinished requests never do).

The window is [warmup_s, end_s], where end_s is the last scheduled arrival (the traffic's end).
A run passes when all of these hold:

1. **enough counted requests**: at least `rule.min_counted(target)` arrived in the window
   (at least 5 misses expected at the allowed miss rate, never fewer than 200);
2. **throughput keeps up**: departures during the window are at least `throughput_ratio` (0.95)
   of arrivals during the window. Counting departures of *any* request (also those that arrived
   before the window) removes the latency lag: the difference is exactly the growth of the number
   in system over the window, so a steady system scores ~1 and an overloaded one less;
3. **the queue does not grow**: the time-averaged number in system over the window's last quarter
   is at most `growth_factor` times that of its second quarter, plus Poisson-sized slack
   (2·sqrt(mid) + 2), so noise around a steady level passes and a linear climb does not;
4. **the SLO**: the share of counted requests that met it (unfinished ones count as missed) is at
   least the target attainment; under the paper's rule (`Slo.definition: mean_itl`, `means`) a
   request "meets" it by completing, and the averages over the counted requests that completed
   must be within the limits: the mean gap between tokens after the first (all their gaps pooled,
   as the paper's profiler averaged them) and, when limited, the mean TTFT.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AcceptanceRule:
    """Thresholds of the rule in the module docstring."""

    throughput_ratio: float = 0.95
    growth_factor: float = 1.25
    min_requests: int = 200  # never judge on fewer counted requests than this
    expected_misses: float = 5.0  # counted requests >= this / (1 - target)

    def min_counted(self, target: float) -> int:
        """Fewest counted requests that can tell `target` attainment: 5 expected misses, >= 200."""
        if target >= 1.0:
            return max(self.min_requests, 1000)
        return max(self.min_requests, math.ceil(self.expected_misses / (1.0 - target) - 1e-9))


DEFAULT_RULE = AcceptanceRule()


@dataclass(frozen=True)
class Verdict:
    """What `judge` found; `reason` says why a run failed ('' when it passed)."""

    passed: bool
    reason: str
    counted: int
    attainment: float | None  # share of counted requests that met the SLO
    throughput_ratio: float | None  # departures / arrivals during the window
    queue_mid: float | None  # mean number in system, second quarter of the window
    queue_late: float | None  # mean number in system, last quarter of the window

    @property
    def stable(self) -> bool:
        """Whether the run passed the stability checks (throughput and queue growth)."""
        return not self.reason.startswith(("unstable", "too few"))


@dataclass(frozen=True)
class MeanSlo:
    """The paper's averaged SLO over a run (`Slo.definition: mean_itl`): per-request arrays aligned
    with the run's arrivals, and the limits in seconds."""

    decode_s: np.ndarray  # e2e - TTFT of each request (NaN when it did not complete)
    gaps: np.ndarray  # output tokens - 1 of each request (the gaps decode_s spans)
    ttft_s: np.ndarray
    itl_limit_s: float
    ttft_limit_s: float | None = None

    def averages(self, counted: np.ndarray) -> tuple[float | None, float | None]:
        """(mean ITL, mean TTFT) over the `counted` requests that completed (None if none did)."""
        done = counted & np.isfinite(self.decode_s)
        gaps = float(np.sum(self.gaps[done]))
        itl = float(np.sum(self.decode_s[done])) / gaps if gaps > 0 else (0.0 if done.any() else None)
        ttft = float(np.mean(self.ttft_s[done])) if done.any() else None
        return itl, ttft

    def miss(self, counted: np.ndarray) -> str:
        """Why the averages over `counted` break a limit ('' when within)."""
        itl, ttft = self.averages(counted)
        if itl is None:
            return "SLO: no counted request completed"
        if itl > self.itl_limit_s:
            return f"SLO: mean ITL {itl * 1000:.1f} ms above {self.itl_limit_s * 1000:g} ms"
        if self.ttft_limit_s is not None and ttft > self.ttft_limit_s:
            return f"SLO: mean TTFT {ttft * 1000:.0f} ms above {self.ttft_limit_s * 1000:g} ms"
        return ""


def number_in_system(arrival_s: np.ndarray, finish_s: np.ndarray):
    """(event times, number in system right after each) as step-function breakpoints."""
    arrival_s = np.asarray(arrival_s, dtype=float)
    finish_s = np.asarray(finish_s, dtype=float)
    done = finish_s[np.isfinite(finish_s)]
    times = np.concatenate([arrival_s, done])
    steps = np.concatenate([np.ones(len(arrival_s)), -np.ones(len(done))])
    order = np.argsort(times, kind="stable")
    return times[order], np.cumsum(steps[order])


def mean_in_system(times: np.ndarray, level: np.ndarray, t0: float, t1: float) -> float:
    """Time average over [t0, t1] of the step function (times, level)."""
    if t1 <= t0:
        return float(np.interp(t0, times, level)) if len(times) else 0.0
    k0 = np.searchsorted(times, t0, side="right")
    k1 = np.searchsorted(times, t1, side="right")
    start = level[k0 - 1] if k0 > 0 else 0.0
    edges = np.concatenate([[t0], times[k0:k1], [t1]])
    values = np.concatenate([[start], level[k0:k1]])
    return float(np.sum(values * np.diff(edges)) / (t1 - t0))


def judge(arrival_s, finish_s, met, target: float, *, warmup_s: float = 0.0,
          end_s: float | None = None, rule: AcceptanceRule = DEFAULT_RULE,
          means: MeanSlo | None = None) -> Verdict:
    """Apply the acceptance rule of the module docstring to one run (`means`: the paper's
    averaged SLO, on top of `met`)."""
    arrival_s = np.asarray(arrival_s, dtype=float)
    finish_s = np.asarray(finish_s, dtype=float)
    met = np.asarray(met, dtype=bool) & np.isfinite(finish_s)
    if end_s is None:
        end_s = float(arrival_s.max()) if len(arrival_s) else 0.0
    window = (arrival_s >= warmup_s) & (arrival_s <= end_s)
    counted = int(window.sum())
    need = rule.min_counted(target)
    attained = float(met[window].mean()) if counted else None
    if counted < need or end_s <= warmup_s:
        return Verdict(False, f"too few requests: {counted} counted after warm-up, need {need}",
                       counted, attained, None, None, None)
    span = end_s - warmup_s
    departures = int(np.sum((finish_s >= warmup_s) & (finish_s <= end_s)))
    ratio = departures / counted
    times, level = number_in_system(arrival_s, finish_s)
    mid = mean_in_system(times, level, warmup_s + span / 4, warmup_s + span / 2)
    late = mean_in_system(times, level, warmup_s + 3 * span / 4, end_s)
    verdict = dict(counted=counted, attainment=attained, throughput_ratio=ratio,
                   queue_mid=mid, queue_late=late)
    if ratio < rule.throughput_ratio:
        return Verdict(False, f"unstable: throughput {ratio:.3f} of the offered rate "
                              f"(need {rule.throughput_ratio:g})", **verdict)
    if late > mid * rule.growth_factor + 2.0 * math.sqrt(mid) + 2.0:
        return Verdict(False, f"unstable: queue grew from {mid:.1f} to {late:.1f} requests", **verdict)
    if attained < target:
        return Verdict(False, f"SLO: attainment {attained:.4f} below {target:g}", **verdict)
    miss = "" if means is None else means.miss(window)
    if miss:
        return Verdict(False, miss, **verdict)
    return Verdict(True, "", **verdict)


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95 % by default); (0, 1) when n = 0."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends despite rounding
    hi = 1.0 if successes == n else min(1.0, centre + half)
    return (lo, hi)


# --- intervals from what varies ---------------------------------------------------------------
# Misses come in bursts (a long prompt stalls a batch; a queue builds and drains), so requests are
# not independent draws and a binomial interval over them is overconfident: across 16 seeds at a
# profile's max rate the attainment's spread was 8x the binomial one. The interval is therefore
# taken from batches of time (batch means): each run's counted window is cut into BATCHES equal
# spans, and the spread of the batches' attainments says how much the pooled value varies.
BATCHES = 10


def batch_counts(arrival_s, met, start_s: float, end_s: float, batches: int = BATCHES) -> np.ndarray:
    """(met, counted) of the counted requests in each of `batches` equal spans of [start_s, end_s]."""
    arrival_s, met = np.asarray(arrival_s, dtype=float), np.asarray(met, dtype=bool)
    window = (arrival_s >= start_s) & (arrival_s <= end_s)
    span = max(end_s - start_s, 1e-12)
    k = np.minimum(((arrival_s[window] - start_s) / span * batches).astype(int), batches - 1)
    return np.stack([np.bincount(k, weights=met[window], minlength=batches),
                     np.bincount(k, minlength=batches)], axis=1).astype(float)


def _t975(df: int) -> float:
    """The 97.5 % quantile of Student's t with `df` degrees of freedom (Cornish-Fisher, df >= 1)."""
    z = 1.959964
    if df >= 1000:
        return z
    g1 = (z**3 + z) / 4
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384
    return z + g1 / df + g2 / df**2 + g3 / df**3 if df >= 3 else (12.706, 4.303)[df - 1]


def _batch_variance(batches: np.ndarray) -> tuple[float, float, int]:
    """(pooled attainment, variance of it from the batches' spread, batches used)."""
    b = np.asarray(batches, dtype=float).reshape(-1, 2)
    b = b[b[:, 1] > 0]
    n = b[:, 1].sum()
    if len(b) < 2 or n <= 0:
        return (b[:, 0].sum() / n if n else float("nan")), 0.0, len(b)
    p = b[:, 0].sum() / n
    # Ratio estimator: batches of unequal size weigh by their requests.
    var = len(b) / (len(b) - 1) * float(np.sum((b[:, 0] - p * b[:, 1]) ** 2)) / n**2
    return p, var, len(b)


def overdispersion(batches: np.ndarray) -> float:
    """How many times the binomial variance the batches show (>= 1): the factor by which misses
    cluster. Per-bucket intervals divide their counts by it (fewer effective requests)."""
    p, var, used = _batch_variance(batches)
    n = float(np.asarray(batches, dtype=float).reshape(-1, 2)[:, 1].sum())
    binomial = p * (1 - p) / n if n > 0 and 0 < p < 1 else 0.0
    return 1.0 if used < 2 or binomial <= 0 else max(1.0, var / binomial)


def batch_interval(batches: np.ndarray) -> tuple[float, float]:
    """95 % interval of the pooled attainment: the batch-means t interval, never narrower than the
    Wilson interval of the pooled counts (which also covers all-met and all-missed runs)."""
    b = np.asarray(batches, dtype=float).reshape(-1, 2)
    met, n = float(b[:, 0].sum()), float(b[:, 1].sum())
    lo, hi = wilson_interval(round(met), round(n))
    p, var, used = _batch_variance(b)
    if used >= 2 and var > 0:
        half = _t975(used - 1) * math.sqrt(var)
        lo, hi = min(lo, max(0.0, p - half)), max(hi, min(1.0, p + half))
    return (lo, hi)
