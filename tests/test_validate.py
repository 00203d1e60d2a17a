"""The solve → simulate → tighten loop behind `melange plan`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from melange.cli import cli
from melange.optimizer import plan_violations
from melange.scenario import load_scenario
from melange.validate import plan_and_validate

STEP = {"alpha": 0.01, "beta_prefill": 0.0001, "beta_decode": 0.0002, "beta_kv": 1.0e-7,
        "kv_capacity_tokens": 40000}


def scenario(tmp_path, max_rate: float, **extra) -> str:
    """One bucket, one GPU type whose profile claims `max_rate` req/s per instance."""
    doc = {
        "name": "loop",
        "grid": {"input_edges": [1, 200], "output_edges": [10, 60]},
        "workload": {"rate": 40, "distribution": [[1.0]]},
        "slo": {"tpot_ms": 60, "attainment": 0.95},
        "gpus": [{"name": "G", "cost": 1.0, "profile": [[max_rate]], "step_time": STEP,
                  "engine": {"max_num_seqs": 32}}],
        "solver": {"slice_factor": 4},
        "simulation": {"requests": 4000, "seed": 3, "warmup_s": 5},
        **extra,
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_honest_profile_holds_in_the_first_round(tmp_path):
    sc = load_scenario(scenario(tmp_path, max_rate=20.0))
    report = plan_and_validate(sc)
    assert len(report.rounds) == 1 and report.rounds[0].held
    assert report.best is report.rounds[0].plan and report.rounds[0].attainment >= 0.95


def test_optimistic_profile_is_tightened_until_the_plan_holds(tmp_path):
    sc = load_scenario(scenario(tmp_path, max_rate=200.0))
    report = plan_and_validate(sc, max_rounds=10)
    first, last = report.rounds[0], report.rounds[-1]
    assert not first.held and first.tightened  # one instance cannot serve 40 req/s
    assert first.tightened[0]["new"] < first.tightened[0]["old"]
    assert last.held and report.best is last.plan
    assert last.plan.counts["G"] > first.plan.counts["G"]
    costs = [r.plan.cost for r in report.rounds]
    assert costs == sorted(costs)  # tightening never makes a plan cheaper
    # Every plan the loop returns still meets its own (tightened) constraints.
    assert all(r.attainment is not None for r in report.rounds)


def test_round_limit_reports_no_plan(tmp_path):
    report = plan_and_validate(load_scenario(scenario(tmp_path, max_rate=200.0)), max_rounds=1)
    assert report.best is None and len(report.rounds) == 1


def test_same_seed_same_rounds(tmp_path):
    path = scenario(tmp_path, max_rate=200.0)
    a = plan_and_validate(load_scenario(path), max_rounds=10).to_dict()
    b = plan_and_validate(load_scenario(path), max_rounds=10).to_dict()
    for report in (a, b):
        report["best"].pop("solve_time_s")  # wall time, the one thing allowed to differ
    assert a == b


def test_without_step_models_it_solves_but_does_not_validate(tmp_path):
    path = scenario(tmp_path, max_rate=20.0)
    doc = yaml.safe_load(open(path))
    del doc["gpus"][0]["step_time"]
    open(path, "w").write(yaml.safe_dump(doc))
    sc = load_scenario(path)
    report = plan_and_validate(sc)
    assert report.best is None and report.rounds[0].attainment is None
    assert plan_violations(report.rounds[0].plan, sc.workload, sc.gpus, sc.profiles, sc.solve) == []


def test_plan_cli_writes_rounds_as_they_finish(tmp_path):
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["plan", scenario(tmp_path, max_rate=200.0), "--rounds", "10",
                                      "-o", str(out)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in (out / "rounds.jsonl").read_text().splitlines()]
    report = json.loads((out / "plan.json").read_text())
    assert len(lines) == len(report["rounds"]) >= 2
    assert lines[-1]["held"] and report["best"]["counts"] == lines[-1]["plan"]["counts"]
    assert "Validation rounds" in result.output


@pytest.mark.parametrize("args,message", [
    (["--duration", "soon"], "--duration"),
    (["--slice-factor", "x"], "--slice-factor"),
])
def test_plan_cli_bad_flags(tmp_path, args, message):
    result = CliRunner().invoke(cli, ["plan", scenario(tmp_path, max_rate=20.0), *args])
    assert result.exit_code == 2 and message in result.output


def test_without_an_slo_plan_solves_and_says_why_it_did_not_validate():
    result = CliRunner().invoke(cli, ["plan", str(Path(__file__).parent / "data" / "seed_example.json")])
    assert result.exit_code == 0, result.output
    assert "not validated: the scenario has no slo" in result.output and "6.700" in result.output
