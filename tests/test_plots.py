"""Each plot function writes a PNG and an SVG from plain data."""

from __future__ import annotations

import numpy as np
import pandas as pd

from melange import plots
from melange.core import BucketGrid, Plan, Slo, Workload
from melange.sim import simulate
from melange.core import LinearStepModel, EngineConfig

GRID = BucketGrid((1, 100, 1000), (1, 100, 500))


def _written(paths):
    assert [p.suffix for p in paths] == [".png", ".svg"]
    assert all(p.is_file() and p.stat().st_size > 1000 for p in paths)
    assert paths[1].read_text().lstrip().startswith("<?xml")


def test_cost_vs_rate_and_vs_slice_factor(tmp_path):
    frame = pd.DataFrame({"rate": [1, 2, 4] * 2, "cost": [1.0, 2.0, 3.0, 1.5, 3.0, 4.5],
                          "label": ["Mélange"] * 3 + ["A10G only"] * 3})
    _written(plots.cost_vs_rate(frame, tmp_path / "rate"))
    sf = pd.DataFrame({"slice_factor": ["continuous", "1", "8"], "cost": [3.0, 5.0, 4.0],
                       "attainment": [0.98, 0.995, 0.99]})
    _written(plots.cost_vs_slice_factor(sf, tmp_path / "sf.png", target=0.99))
    assert plots._slice_order(["continuous", "16", "2"]) == ["2", "16", "continuous"]


def test_bucket_map_latency_and_attainment_from_a_simulation(tmp_path):
    share = {"A": np.array([[1.0, 0.5], [0.0, 0.0]]), "B": np.array([[0.0, 0.5], [1.0, 0.0]])}
    plan = Plan({"A": 1, "B": 1}, share, 2.0)
    _written(plots.bucket_map(plan, GRID, tmp_path / "map"))
    step = LinearStepModel(0.01, 1e-4, 2e-4, 1e-7, 40000)
    workload = Workload(GRID, np.array([[0.4, 0.2], [0.4, 0.0]]), 4.0)
    slo = Slo(60, definition="decode", ttft_ms=500, attainment=0.9)
    result = simulate(plan, workload, {"A": step, "B": step}, {"A": EngineConfig(), "B": EngineConfig()}, slo,
                      requests=400, seed=1)
    _written(plots.latency_distribution(result.records, slo, tmp_path / "latency"))
    _written(plots.attainment_per_bucket(result.records, GRID, tmp_path / "att", target=0.9))


def test_sweep_plots_follow_the_axes_that_vary(tmp_path):
    table = pd.DataFrame({"slice_factor": ["1", "continuous"] * 2, "rate": [1.0, 1.0, 2.0, 2.0],
                          "slo_tpot_ms": [None] * 4, "headroom": [None] * 4, "seed": [0] * 4,
                          "cost": [2.0, 1.0, 3.0, 2.5], "attainment": [None] * 4})
    names = sorted(p.name for p in plots.sweep_plots(table, tmp_path))
    assert names == ["cost_vs_rate.png", "cost_vs_rate.svg", "cost_vs_slice_factor.png",
                     "cost_vs_slice_factor.svg"]
    assert plots.sweep_plots(table.iloc[:1], tmp_path / "none") == []
