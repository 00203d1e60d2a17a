"""Per-bucket rate search on a live server, judged by the project's one acceptance rule.

A *point* is one load test: one bucket's requests at one rate (Poisson by default), enough of
them that the rule can tell (`AcceptanceRule.min_counted` after the warm-up), spanning several
times the slowest request's SLO-bound latency. It passes when `melange.acceptance.judge` says
so, with arrivals at the *scheduled* send times and departures at scheduled time + measured
e2e (failed requests depart when they failed and never meet the SLO), and when failures stay
under `max_error_share`.

The search copies the sim-profiles' shape (`perf.profile_sim.search_bucket`): start at 4x the
rate of one request in flight (1 / a lone request's latency, probed first; a batching server
holds many, and the lowest rates are the slowest points to measure), step down by 4x until a
point passes, double until one fails, then bisect to `rel_tol`, never measuring a rate at or
above one that already failed. It stops early at the first failed
point going up (saturation, unstable queue, or rising errors): no higher rate is tried after a
failure.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import numpy as np

from melange.acceptance import DEFAULT_RULE, AcceptanceRule, judge
from melange.core import BucketGrid, Slo
from melange.metrics import RequestRecord, slo_met, to_frame


@dataclass(frozen=True)
class SearchSettings:
    """How hard the measured search works per bucket (rates in the GPU's req/s)."""

    rel_tol: float = 0.05  # stop bisecting when (hi - lo) / lo is below this
    max_requests: int = 3000  # per point
    horizon: float = 3.0  # a point's arrivals span >= this x the slowest request's SLO latency
    warmup: float = 0.1  # share of the arrival span left out (the server starts empty)
    max_rate: float = 2000.0  # req/s: stop doubling here
    max_error_share: float = 0.05  # more failed requests than this fails the point
    process: str = "poisson"
    cv: float = 1.0
    seed: int = 0
    rule: AcceptanceRule = DEFAULT_RULE

    def as_dict(self) -> dict:
        """JSON-ready form (the run log compares it on resume)."""
        return {"rel_tol": self.rel_tol, "max_requests": self.max_requests, "horizon": self.horizon,
                "warmup": self.warmup, "max_rate": self.max_rate, "max_error_share": self.max_error_share,
                "process": self.process, "cv": self.cv, "seed": self.seed,
                "rule": [self.rule.throughput_ratio, self.rule.growth_factor, self.rule.min_requests,
                         self.rule.expected_misses]}


def point_size(settings: SearchSettings, slo: Slo, grid: BucketGrid, j: int, rate: float) -> int:
    """Requests in one point: enough counted after the warm-up, spanning the horizon."""
    need = settings.rule.min_counted(slo.attainment)
    low = math.ceil(need / (1.0 - settings.warmup) * 1.05) + 5
    slowest_s = (grid.out_edges[j + 1] - 1) * slo.tpot_ms / 1000.0
    n = int(rate * settings.horizon * slowest_s)
    return int(np.clip(n, low, max(low, settings.max_requests)))


def judge_point(records: list[RequestRecord], slo: Slo, settings: SearchSettings) -> dict:
    """The verdict of one point as a JSON-ready dict (passed, reason, counts, attainment...)."""
    frame = to_frame(records, slo) if records else None
    if frame is None or len(frame) == 0:
        return {"passed": False, "reason": "no requests finished", "requests": 0, "errors": 0}
    arrival = frame["arrival_s"].to_numpy(float)
    finish = arrival + frame["e2e_s"].to_numpy(float)
    end_s = float(arrival.max())
    met = slo_met(frame, slo)
    v = judge(arrival, finish, met, slo.attainment, warmup_s=settings.warmup * end_s, end_s=end_s,
              rule=settings.rule)
    errors = frame["error"].notna()
    out = {"passed": v.passed, "reason": v.reason, "requests": int(len(frame)), "errors": int(errors.sum()),
           "counted": v.counted, "attainment": v.attainment, "throughput_ratio": v.throughput_ratio,
           "p99_send_lag_s": float(np.nanpercentile(frame["sent_s"] - frame["arrival_s"], 99))}
    share = float(errors.mean())
    if v.passed and share > settings.max_error_share:
        out.update(passed=False, reason=f"errors: {share:.1%} of requests failed "
                                        f"(allowed {settings.max_error_share:.0%})")
    if errors.any():
        reasons = frame.loc[errors, "error"].astype(str).str.split(":").str[0].value_counts()
        out["error_kinds"] = {str(k): int(n) for k, n in reasons.items()}
    return out


Measure = Callable[[float], Awaitable[dict]]


async def search_rate(measure: Measure, first_guess: float, settings: SearchSettings) -> float:
    """Highest rate whose point passes (0 if none): bracket from `first_guess`, then bisect.
    `measure(rate)` runs (or recalls) one point and returns its verdict dict."""
    async def ok(rate: float) -> bool:
        return bool((await measure(rate))["passed"])

    lo, hi = 4 * first_guess, math.inf  # hi: the lowest rate known to fail
    for _ in range(7):
        if await ok(lo):
            break
        lo, hi = lo / 4, lo
    else:
        return 0.0
    while hi == math.inf:  # double until a failure (never above one already seen)
        if lo * 2 > settings.max_rate:
            return lo
        lo, hi = (lo * 2, hi) if await ok(lo * 2) else (lo, lo * 2)
    while (hi - lo) / lo > settings.rel_tol:
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if await ok(mid) else (lo, mid)
    return lo
