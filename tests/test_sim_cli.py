"""`melange simulate` through click's CliRunner."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from melange.cli import cli
from melange.core import Plan

SCENARIO = """
name: simtest
grid: {input_edges: [1, 100, 1000], output_edges: [1, 50, 300]}
workload:
  rate: 4
  distribution: [[0.4, 0.2], [0.3, 0.1]]
slo: {tpot_ms: 80}
gpus:
  - name: A10G
    cost: 1.0
    engine: {max_num_seqs: 64}
    step_time: {alpha: 0.01, beta_prefill: 0.0002, beta_decode: 0.0001, beta_kv: 0.0000005,
                kv_capacity_tokens: 50000}
  - name: A100
    cost: 3.7
    step_time: {alpha: 0.007, beta_prefill: 0.0001, beta_decode: 0.00005, beta_kv: 0.0000003,
                kv_capacity_tokens: 200000}
  - name: H100
    cost: 7.5
simulation: {requests: 300, seed: 1}
"""


@pytest.fixture
def files(tmp_path):
    scenario = tmp_path / "scenario.yaml"
    scenario.write_text(SCENARIO)

    def plan(counts, share, name="plan.json"):
        path = tmp_path / name
        p = Plan(counts, {g: np.asarray(s, dtype=float) for g, s in share.items()}, cost=1.0)
        path.write_text(json.dumps(p.to_dict()))
        return str(path)

    return tmp_path, str(scenario), plan


GOOD = ({"A10G": 1, "A100": 1, "H100": 0},
        {"A10G": [[1, 0.5], [0, 0]], "A100": [[0, 0.5], [1, 1]], "H100": [[0, 0], [0, 0]]})


def test_run_writes_records_and_summary(files):
    tmp, scenario, plan = files
    out = tmp / "out"
    result = CliRunner().invoke(cli, ["simulate", scenario, "--plan", plan(*GOOD), "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "SLO attainment" in result.output
    records = pd.read_csv(out / "records.csv")
    summary = json.loads((out / "summary.json").read_text())
    assert len(records) == summary["n_requests"] == 300  # the scenario's simulation.requests
    assert set(records["gpu"]) == {"A10G", "A100"}
    assert summary["in_flight_at_end"] == 0 and 0 <= summary["attainment"]["overall"] <= 1


def test_duration_seed_router_and_exact_flags(files):
    tmp, scenario, plan = files
    p = plan(*GOOD)
    runs = []
    for extra in (["--duration", "1m", "--seed", "4"], ["--duration", "60s", "--seed", "4", "--exact"]):
        out = tmp / f"run{len(runs)}"
        result = CliRunner().invoke(cli, ["simulate", scenario, "--plan", p, "--router", "round_robin",
                                          "-o", str(out), *extra])
        assert result.exit_code == 0, result.output
        runs.append(pd.read_csv(out / "records.csv"))
    assert runs[0]["arrival_s"].max() < 60 and len(runs[0]) > 150
    assert np.allclose(runs[0]["e2e_s"], runs[1]["e2e_s"])  # fast path = exact path


def one_line_error(result, exit_code=2):
    assert result.exit_code == exit_code, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.mark.parametrize("counts, share, message", [
    ({"A10G": 1, "B200": 1}, {"A10G": [[1, 1], [1, 0]], "B200": [[0, 0], [0, 1]]},
     "GPU 'B200' is not in the scenario"),
    ({"A10G": 1, "A100": 1}, {"A10G": [[0.5, 0.5], [0.5, 0.5]], "A100": [[0.4, 0.5], [0.5, 0.5]]},
     "shares for bucket (0, 0)"),
    ({"A10G": 1, "H100": 1}, {"A10G": [[1, 1], [1, 0]], "H100": [[0, 0], [0, 1]]},
     "GPU 'H100' has no step_time"),
    ({"A10G": 1}, {"A10G": [[1, 1, 1], [1, 1, 1]]}, "does not match the 2x2 grid"),
])
def test_bad_plan_is_a_one_line_error(files, counts, share, message):
    _, scenario, plan = files
    result = CliRunner().invoke(cli, ["simulate", scenario, "--plan", plan(counts, share)])
    line = one_line_error(result)
    assert line.startswith("Error: ") and message in line


def test_missing_files_and_bad_values_are_one_line_errors(files):
    tmp, scenario, plan = files
    good = plan(*GOOD)
    assert "not found" in one_line_error(CliRunner().invoke(
        cli, ["simulate", scenario, "--plan", str(tmp / "nope.json")]))
    assert "not found" in one_line_error(CliRunner().invoke(
        cli, ["simulate", str(tmp / "nope.yaml"), "--plan", good]))
    assert "--duration" in one_line_error(CliRunner().invoke(
        cli, ["simulate", scenario, "--plan", good, "--duration", "1 fortnight"]))
    (tmp / "notplan.json").write_text('{"share": {}}')
    assert "missing key 'counts'" in one_line_error(CliRunner().invoke(
        cli, ["simulate", scenario, "--plan", str(tmp / "notplan.json")]))


def test_trace_replay_scenario(tmp_path):
    scenario = tmp_path / "replay.yaml"
    scenario.write_text("""
workload:
  rate: 3
  trace: splitwise_conv
  lengths: trace
  arrival: {process: trace, scale_to_rate: true}
slo: {tpot_ms: 100}
gpus:
  - name: A100
    cost: 3.7
    step_time: {alpha: 0.008, beta_prefill: 0.00012, beta_decode: 0.00005, beta_kv: 0.0000003,
                kv_capacity_tokens: 200000}
""")
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(Plan({"A100": 2}, {"A100": np.ones((10, 6))}, 7.4).to_dict()))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["simulate", str(scenario), "--plan", str(plan), "--duration", "2m",
                                      "--warmup", "10s", "-o", str(out)])
    assert result.exit_code == 0, result.output
    records = pd.read_csv(out / "records.csv")
    assert 150 < len(records) < 450  # bursty trace timestamps, scaled to 3 req/s on average
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counted"] == int((records["arrival_s"] >= 10).sum())
