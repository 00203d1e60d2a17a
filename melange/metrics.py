"""Per-request records and the pure functions that summarise them.

The simulator and the profiler emit the same `RequestRecord`, so simulated and measured runs
are summarised by the same code and compare directly.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields

import numpy as np
import pandas as pd

from melange.acceptance import MeanSlo
from melange.core import Slo


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One finished (or failed) request. Times in seconds; `arrival_s` from the run's start."""

    request_id: int
    arrival_s: float
    input_tokens: int
    output_tokens: int
    bucket_in: int  # input-bucket index, -1 outside the grid
    bucket_out: int  # output-bucket index, -1 outside the grid
    gpu: str
    instance: int
    queue_s: float  # arrival -> first scheduled
    ttft_s: float  # arrival -> first output token
    e2e_s: float  # arrival -> last output token
    preemptions: int = 0
    error: str | None = None
    # Measured runs (the profiler): `arrival_s` is the *scheduled* send time and the latencies
    # count from it, so client lag shows up as queueing instead of hiding it (coordinated
    # omission); `sent_s` is when the request actually left. The simulator sends on time.
    sent_s: float = math.nan
    itl_s: tuple[float, ...] | None = None  # every inter-token gap, when tokens were streamed

    @property
    def send_lag_s(self) -> float:
        """How late the client sent the request (actual minus scheduled send time)."""
        return self.sent_s - self.arrival_s

    @property
    def tpot_mean_s(self) -> float:
        """Paper definition: e2e / output tokens (includes queueing and prefill)."""
        return tpot_mean(self.e2e_s, self.output_tokens)

    @property
    def tpot_decode_s(self) -> float:
        """vLLM definition: (e2e - TTFT) / (output tokens - 1); NaN for one-token outputs."""
        return tpot_decode(self.e2e_s, self.ttft_s, self.output_tokens)


RECORD_COLUMNS = [f.name for f in fields(RequestRecord)]


def tpot_mean(e2e_s, output_tokens):
    """Time per output token, paper definition: e2e / output tokens."""
    return np.asarray(e2e_s, dtype=float) / np.maximum(np.asarray(output_tokens), 1)


def tpot_decode(e2e_s, ttft_s, output_tokens):
    """Time per output token, vLLM definition: (e2e - TTFT) / (output - 1); NaN when output <= 1."""
    out = np.asarray(output_tokens, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(out > 1, (np.asarray(e2e_s) - np.asarray(ttft_s)) / (out - 1), np.nan)


def slo_met(frame: pd.DataFrame, slo: Slo) -> np.ndarray:
    """Whether each request met the SLO (failed requests never do); under `mean_itl`, whether it
    completed (its latencies are judged on average, `slo_means`)."""
    if not slo.per_request:
        return frame["error"].isna().to_numpy() & np.isfinite(frame["e2e_s"].to_numpy(float))
    ok = frame["error"].isna().to_numpy().copy()
    if slo.tpot_ms is not None:
        tpot = frame["tpot_mean_s"] if slo.definition == "mean" else frame["tpot_decode_s"].fillna(0.0)
        ok &= tpot.to_numpy() * 1000.0 <= slo.tpot_ms
    if slo.ttft_ms is not None:
        ok &= frame["ttft_s"].to_numpy() * 1000.0 <= slo.ttft_ms
    if slo.e2e_ms is not None:  # an unfinished request (NaN) never meets it
        ok &= frame["e2e_s"].to_numpy(float) * 1000.0 <= slo.e2e_ms
    return ok


def slo_means(frame: pd.DataFrame, slo: Slo) -> MeanSlo | None:
    """The paper's averaged SLO over `frame`'s requests (row order kept), or None for a
    per-request definition."""
    if slo.per_request:
        return None
    ok = frame["error"].isna().to_numpy()
    e2e, ttft = frame["e2e_s"].to_numpy(float), frame["ttft_s"].to_numpy(float)
    return MeanSlo(decode_s=np.where(ok, e2e - ttft, np.nan),
                   gaps=np.maximum(frame["output_tokens"].to_numpy(float) - 1, 0),
                   ttft_s=np.where(ok, ttft, np.nan), itl_limit_s=slo.tpot_ms / 1000.0,
                   ttft_limit_s=None if slo.ttft_ms is None else slo.ttft_ms / 1000.0)


def to_frame(records: list[RequestRecord] | pd.DataFrame, slo: Slo | None = None) -> pd.DataFrame:
    """Records as a DataFrame with both TPOT definitions and, given an SLO, an `slo_met` column."""
    if isinstance(records, pd.DataFrame):
        frame = records.copy()
    else:
        frame = pd.DataFrame([asdict(r) for r in records], columns=RECORD_COLUMNS)
    frame["tpot_mean_s"] = tpot_mean(frame["e2e_s"], frame["output_tokens"])
    frame["tpot_decode_s"] = tpot_decode(frame["e2e_s"], frame["ttft_s"], frame["output_tokens"])
    if slo is not None:
        frame["slo_met"] = slo_met(frame, slo)
    return frame


def latency_stats(frame: pd.DataFrame) -> dict[str, dict[str, float]]:
    """mean/p50/p90/p99 of queueing, TTFT, both TPOTs and e2e (seconds), over successful requests."""
    ok = frame[frame["error"].isna()]
    stats = {}
    for col in ("queue_s", "ttft_s", "tpot_mean_s", "tpot_decode_s", "e2e_s"):
        values = ok[col].dropna().to_numpy()
        if len(values) == 0:
            stats[col] = {"mean": float("nan"), "p50": float("nan"), "p90": float("nan"), "p99": float("nan")}
            continue
        p50, p90, p99 = np.percentile(values, [50, 90, 99])
        stats[col] = {"mean": float(values.mean()), "p50": float(p50), "p90": float(p90), "p99": float(p99)}
    return stats


def attainment(frame: pd.DataFrame, by: list[str] | None = None) -> float | pd.Series:
    """Share of requests that met the SLO, overall or grouped by columns (needs `slo_met`)."""
    if by is None:
        return float(frame["slo_met"].mean()) if len(frame) else float("nan")
    return frame.groupby(by)["slo_met"].mean()
