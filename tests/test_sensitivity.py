"""How a plan's verdict moves across the step model's uncertainty band (`--sensitivity`)."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from melange.cli import cli
from melange.core import Plan
from melange.scenario import load_scenario
from melange.validate.check import run_settings
from melange.validate.sensitivity import plan_sensitivity, scaled
from tests.validate_scenarios import write

# One H100 serving short requests one at a time: a decode step is ~5.4 ms as calibrated and
# ~6.3 ms at the slow end of H100 + vllm-0.23's band (±16.6 %), so a 5.9 ms decode TPOT limit
# holds as calibrated and at the fast end, and fails at the slow end: a knife-edge plan.
KNIFE = {
    "name": "knife", "model": "llama-2-7b",
    "grid": {"input_edges": [1, 100], "output_edges": [20, 60]},
    "workload": {"rate": 0.2, "distribution": [[1.0]]},
    "slo": {"tpot_ms": 5.9, "definition": "decode", "ttft_ms": 2000, "attainment": 0.9},
    "gpus": [{"name": "H100", "catalog": "H100", "profile": [[1.0]], "step_time": "roofline"}],
    "simulation": {"requests": 400, "seed": 3, "warmup_s": 5},
}


def knife(tmp_path, tpot_ms: float = 5.9):
    return load_scenario(write(tmp_path, {**KNIFE, "slo": {**KNIFE["slo"], "tpot_ms": tpot_ms}}, "knife.yaml"))


def test_scaled_models_run_at_the_ends_of_their_own_band(tmp_path):
    sc = knife(tmp_path)
    m = sc.step_models["H100"]
    assert 0.1 < m.uncertainty < 0.3
    for sign in (-1, 1):
        shifted, scales = scaled(sc, sign)
        assert scales == {"H100": pytest.approx(1 + sign * m.uncertainty, abs=1e-4)}
        for args in ((0, 1, 50), (512, 3, 900), (0, 64, 20_000)):
            assert shifted.step_models["H100"].step_time(*args) == pytest.approx(
                m.step_time(*args) * scales["H100"], rel=1e-9)
    assert sc.step_models["H100"] is m  # the original is untouched


def test_a_knife_edge_plan_fails_at_the_slow_end_only(tmp_path):
    sc = knife(tmp_path)
    plan = Plan({"H100": 1}, {"H100": np.ones(sc.workload.grid.shape)}, cost=7.516)
    ends = {e.end: e for e in plan_sensitivity(sc, plan, [101, 102], run_settings(sc))}
    assert ends["fast"].held and ends["fast"].attainment > 0.95
    assert not ends["slow"].held and ends["slow"].attainment < 0.5
    assert ends["slow"].reasons


def test_a_plan_with_room_holds_at_both_ends(tmp_path):
    sc = knife(tmp_path, tpot_ms=20.0)
    plan = Plan({"H100": 1}, {"H100": np.ones(sc.workload.grid.shape)}, cost=7.516)
    assert all(e.held for e in plan_sensitivity(sc, plan, [101], run_settings(sc)))


def test_measured_models_have_no_band(tmp_path):
    from tests.validate_scenarios import scenario

    sc = load_scenario(scenario(tmp_path, max_rate=20.0))
    shifted, scales = scaled(sc, 1)
    assert scales == {} and shifted.step_models == sc.step_models


def test_profile_sensitivity_needs_simulate(tmp_path):
    r = CliRunner().invoke(cli, ["profile", "--from-results", str(tmp_path), "--gpu", "A10G", "--model",
                                 "llama-2-7b", "--slo-tpot", "100ms", "--sensitivity", "-o", str(tmp_path / "p.yaml")])
    assert r.exit_code == 2 and "--sensitivity: needs --simulate" in r.output


def test_profile_sensitivity_lists_the_band_and_the_cells(tmp_path):
    out, grid = tmp_path / "p.yaml", tmp_path / "grid.json"
    grid.write_text('{"input_edges": [1, 64], "output_edges": [8, 32]}')
    r = CliRunner().invoke(cli, ["profile", "--simulate", "--gpu", "H100", "--model", "llama-2-7b", "--slo-tpot",
                                 "12ms", "--grid", str(grid),
                                 "--sensitivity", "--quiet", "--no-cache", "--workers", "1", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "step-time band ±16.6% (H100's family fit and vllm-0.23)" in r.output and "(slow end)" in r.output
