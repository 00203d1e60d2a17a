"""What a simulation returns: per-request records and a JSON-ready summary, written on request."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from melange.core import BucketGrid, MelangeError, Slo
from melange.keys import canonical
from melange.metrics import attainment, latency_stats


@dataclass
class SimResult:
    """Records (one row per finished or failed request, `RequestRecord` columns + both TPOTs +
    `slo_met`) and the run's summary."""

    records: pd.DataFrame
    summary: dict

    def write(self, out_dir: str | Path, records_format: str = "csv") -> list[Path]:
        """Write records.csv (or records.parquet) and summary.json into `out_dir`."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        if records_format == "parquet":
            try:
                import pyarrow  # noqa: F401
            except ImportError:
                raise MelangeError("records: Parquet needs pyarrow (pip install -e '.[parquet]')") from None
            records = out / "records.parquet"
            self.records.to_parquet(records, index=False)
        elif records_format == "csv":
            records = out / "records.csv"
            self.records.to_csv(records, index=False)
        else:
            raise MelangeError(f"records: unknown format {records_format!r} (csv or parquet)")
        summary = out / "summary.json"
        summary.write_text(json.dumps(self.summary, indent=2) + "\n")
        return [records, summary]


def summarise(frame: pd.DataFrame, grid: BucketGrid, slo: Slo, *, n_requests: int,
              in_flight: int, instances: list[dict], sim_time_s: float, wall_time_s: float,
              warmup_s: float) -> dict:
    """Aggregates over the requests that arrived after `warmup_s`."""
    counted = frame[frame["arrival_s"] >= warmup_s]
    ok = counted["error"].isna()
    per_bucket = {}
    if len(counted):
        for (i, j), value in attainment(counted, ["bucket_in", "bucket_out"]).items():
            label = grid.label(i, j) if i >= 0 and j >= 0 else "outside grid"
            per_bucket[label] = value
    per_gpu = attainment(counted, ["gpu"]).to_dict() if len(counted) else {}
    errors = counted.loc[~ok, "error"].value_counts().to_dict()
    summary = {
        "n_requests": n_requests,
        "completed": int((frame["error"].isna()).sum()),
        "failed": int((~frame["error"].isna()).sum()),
        "in_flight_at_end": in_flight,
        "counted": len(counted),
        "warmup_s": warmup_s,
        "errors": errors,
        "slo": {"tpot_ms": slo.tpot_ms, "definition": slo.definition, "ttft_ms": slo.ttft_ms, "e2e_ms": slo.e2e_ms,
                "attainment": slo.attainment},
        "attainment": {"overall": attainment(counted), "per_bucket": per_bucket, "per_gpu": per_gpu},
        "slo_ok": bool(len(counted) and attainment(counted) >= slo.attainment),
        "latency_s": latency_stats(counted),
        "preemptions": int(sum(s["preemptions"] for s in instances)),
        "instances": instances,
        "sim_time_s": sim_time_s,
        "wall_time_s": wall_time_s,
    }
    return canonical(summary)
