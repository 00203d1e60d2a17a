"""Figures of one plan: which GPU types serve each bucket, latency against the SLO, attainment
per bucket. The latency plots need request records: one fresh simulation of the plan (a seed
after the confirmation seeds, never the tuning seed) when the caller has none."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from melange.core import Plan
from melange.scenario import Scenario


def plan_records(sc: Scenario, plan: Plan, *, seed: int, requests: int | None = None) -> pd.DataFrame:
    """The counted request records of one simulation of `plan` on `sc` (the warm-up's arrivals are
    simulated on top and left out, as in validation runs)."""
    from melange.sim import simulate
    from melange.validate import run_settings

    settings = run_settings(sc, requests=requests)
    res = simulate(plan, sc.workload, sc.step_models, sc.engines, sc.slo, requests=settings.sim_requests,
                   duration_s=settings.sim_duration_s, seed=seed, router=settings.router,
                   warmup_s=settings.warmup_s)
    rec = res.records
    start = settings.window_start(rec["arrival_s"].to_numpy(float))
    return rec[rec["arrival_s"] >= start].reset_index(drop=True)


def plan_figures(sc: Scenario, plan: Plan, out_dir: str | Path, *, records: pd.DataFrame | None = None,
                 seed: int | None = None, requests: int | None = None, title: str = "") -> list[Path]:
    """bucket_map, and (with an SLO and step-time models) latency and attainment_per_bucket."""
    from melange.plots import attainment_per_bucket, bucket_map, latency_distribution

    out = Path(out_dir)
    prefix = f"{title}: " if title else ""
    paths = bucket_map(plan, sc.workload.grid, out / "bucket_map", rates=sc.workload.bucket_rates(),
                       title=f"{prefix}which GPU types serve each bucket")
    if sc.slo is None or any(g not in sc.step_models for g, n in plan.counts.items() if n):
        return paths
    if records is None:
        seed = sc.simulation.seed + 100 if seed is None else seed  # past the confirmation seeds
        records = plan_records(sc, plan, seed=seed, requests=requests)
    paths += latency_distribution(records, sc.slo, out / "latency", title=f"{prefix}latency against the SLO")
    paths += attainment_per_bucket(records, sc.workload.grid, out / "attainment_per_bucket", sc.slo.attainment,
                                   title=f"{prefix}SLO attainment per bucket")
    return paths
