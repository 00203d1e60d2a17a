"""Per-bucket rate search on a live server: the sim-profiles' trials and search
(`melange.rate_search`), each point judged by the project's one acceptance rule.

A *point* is one load test: one bucket's requests at one rate (Poisson by default), as long as
the shared trial design says (a warm-up of 2x the slowest request's SLO-bound latency, then a
window of >= 5x that latency, >= 60 GPU seconds and enough counted requests for the rule; the
confirming point 4x longer, on a fresh seed, with at least `confirm_requests` arrivals). It passes
when `melange.acceptance.judge` says so, with arrivals at the *scheduled* send times and
departures at scheduled time + measured e2e (failed requests depart when they failed and never
meet the SLO), and when failures stay under `max_error_share`. The search brackets from 4x the
rate of one request in flight (1 / a lone request's latency, probed first; a batching server holds
many, and the lowest rates are the slowest points to measure), bisects, and confirms, stepping
down until the confirmation passes with the guard band; no rate at or above a failed one is tried.

The measured defaults differ from the simulated ones only where a real server's time is dear:
`rel_tol` 5 % and a confirmation of at least 2,000 arrivals (sim-profiles: 10,000), both
settable. A point's length is set by time (about 7x the slowest latency, >= 60 s), so a fast
bucket at a high rate sends many requests; `max_requests` (30,000) only stops runaways.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from melange.acceptance import DEFAULT_RULE, AcceptanceRule, judge
from melange.core import BucketGrid, Slo
from melange.metrics import RequestRecord, slo_means, slo_met, to_frame
from melange.rate_search import SearchParams, Trial, slo_bound_s

MEASURED = SearchParams(rel_tol=0.05, confirm_requests=2000)


@dataclass(frozen=True)
class SearchSettings:
    """How the measured search works per bucket: the shared trial design (`params`, rates in the
    GPU's req/s) and what only a live server needs."""

    params: SearchParams = MEASURED
    max_error_share: float = 0.05  # more failed requests than this fails the point
    process: str = "poisson"
    cv: float = 1.0
    rule: AcceptanceRule = DEFAULT_RULE

    def as_dict(self) -> dict:
        """JSON-ready form (the run log compares it on resume)."""
        return {"params": asdict(self.params), "max_error_share": self.max_error_share,
                "process": self.process, "cv": self.cv, "rule": asdict(self.rule)}


def point_plan(settings: SearchSettings, slo: Slo, grid: BucketGrid, j: int, trial: Trial) -> tuple[int, float]:
    """(requests, warm-up GPU seconds) of one point of a bucket in output column `j`; never more
    than `max_requests` (a point cut short by it may count too few requests and fail: the rule
    never judges on less)."""
    latency_s = slo_bound_s(slo, grid.out_edges[j + 1] - 1)
    warmup_s, window_s = settings.params.trial_span(trial, latency_s, settings.rule.min_counted(slo.attainment))
    return min(math.ceil((warmup_s + window_s) * trial.rate), settings.params.max_requests), warmup_s


def judge_point(records: list[RequestRecord], slo: Slo, settings: SearchSettings, warmup_s: float) -> dict:
    """The verdict of one point as a JSON-ready dict (passed, reason, counts, attainment...);
    requests sent before `warmup_s` (GPU seconds) are left out."""
    frame = to_frame(records, slo) if records else None
    if frame is None or len(frame) == 0:
        return {"passed": False, "reason": "no requests finished", "requests": 0, "errors": 0}
    arrival = frame["arrival_s"].to_numpy(float)
    finish = arrival + frame["e2e_s"].to_numpy(float)
    end_s = float(arrival.max())
    met = slo_met(frame, slo)
    v = judge(arrival, finish, met, slo.attainment, warmup_s=warmup_s, end_s=end_s, rule=settings.rule,
              means=slo_means(frame, slo))
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
