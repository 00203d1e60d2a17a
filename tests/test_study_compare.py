"""compare / study paper / plan --plot: validated baselines per rate, savings, report, resume."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from melange.cli import cli
from melange.study import LocalExecutor, finished, run_sweep
from melange.study.compare import compare_sweep, savings
from melange.study.paper import run_study, study_savings, write_report

REQUESTS = 600  # shortened runs: above the acceptance rule's 500 counted requests


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    """One study of the default scenario at 4 req/s (the compare in study_dir/default)."""
    out = tmp_path_factory.mktemp("study")
    tables = run_study(out, scenarios=("default",), rates=(4.0,), requests=REQUESTS, executor=LocalExecutor(1))
    return out, tables


def test_compare_baselines_are_fewest_that_hold_and_saving_is_against_the_cheapest(study_dir):
    out, tables = study_dir
    sweep = compare_sweep("default", [4.0], requests=REQUESTS)
    assert sorted(sweep.axes["only"]) == sorted(["all", "L4", "A10G", "A100-80GB", "H100"])
    table = tables["default"]
    lines = finished(out / "default")
    for line in lines.values():
        only, result = line["point"]["only"], line["result"]
        if only == "all" and result["choice"] != "mix":  # a single type held for less: it is that baseline
            (g, n), = [(g, n) for g, n in result["counts"].items() if n]
            assert result["cost"] == table.loc[table["only"] == g, "cost"].iloc[0]
            continue
        if only == "all":  # Mélange: trimmed like a baseline, so one fewer of any type failed
            tried = result["trim"]["tried"]
            assert result["held"] and result["cost"] <= result["trim"]["from_cost"]
            for g, n in result["counts"].items():
                busy = np.any(np.asarray(result["plan"]["share"].get(g, 0.0)) > 0)
                assert n <= (1 if busy else 0) or tried.get(f"{g}={n - 1}") is False, (g, n, tried)
            continue
        if not result.get("held"):
            continue
        n = result["counts"][only]
        tried = {int(k): v for k, v in result["baseline"]["tried"].items()}
        for check in result["holdout"]:  # the last check on fresh seeds: one more instance while it failed
            tried[check["counts"][only]] = tried.get(check["counts"][only], True) and check["held"]
        assert tried[n] is True  # the answer held ...
        assert n == 1 or tried.get(n - 1) is False  # ... and one fewer was seen to fail
    s = savings(table).iloc[0]
    singles = table[(table["only"] != "all") & (table["held"] == True)]  # noqa: E712
    assert s["best_single_cost"] == singles["cost"].min()
    mel = table[table["only"] == "all"].iloc[0]
    assert mel["held"]
    assert np.isclose(s["saving"], 1 - mel["cost"] / singles["cost"].min())
    skipped = []
    run_sweep(sweep, out / "default", executor=LocalExecutor(1),
              on_start=lambda total, done: skipped.append((total, done)))
    assert skipped == [(5, 5)]  # resumed: nothing recomputed


def test_saving_is_blank_when_a_side_did_not_hold():
    table = pd.DataFrame([{"rate": 1.0, "only": "all", "held": False, "cost": 1.0},
                          {"rate": 1.0, "only": "A", "held": True, "cost": 2.0},
                          {"rate": 2.0, "only": "all", "held": True, "cost": 1.5},
                          {"rate": 2.0, "only": "A", "held": True, "cost": 2.0},
                          {"rate": 2.0, "only": "B", "held": True, "cost": 3.0}])
    s = savings(table).set_index("rate")
    assert np.isnan(s.loc[1.0, "saving"])
    all_held = table[table["rate"] == 2.0].astype({"held": bool})  # a bool column (numpy booleans)
    assert np.isclose(savings(all_held)["saving"].iloc[0], 0.25)
    assert s.loc[2.0, "best_single"] == "A" and np.isclose(s.loc[2.0, "saving"], 0.25)


def test_study_writes_report_with_savings_plots_and_the_papers_ranges(study_dir):
    tmp_path, tables = study_dir
    report = write_report(tmp_path, tables, requests=REQUESTS).read_text()
    assert "| default |" in report and "paper" in report and "Where our numbers differ" in report
    for name in ("cost_vs_rate", "bucket_map", "latency", "attainment_per_bucket"):
        assert (tmp_path / "plots" / "default" / f"{name}.png").is_file(), name
        assert f"plots/default/{name}.png" in report
    s = study_savings(tables)["default"]
    assert s["min"] == s["max"] == s["mean"]


def test_compare_cli_resumes_and_plan_plot(study_dir, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["compare", "default", "--rate", "4", "--requests", str(REQUESTS), "--workers", "1",
                              "-o", str(study_dir[0] / "default"), "--plot", str(tmp_path / "p")])
    assert res.exit_code == 0, res.output
    assert "5 of 5 points already finished" in res.output
    assert "saving" in res.output and (tmp_path / "p" / "cost_vs_rate.png").is_file()
    res = runner.invoke(cli, ["compare", "default", "--rate", "x"])
    assert res.exit_code == 2 and "--rate" in res.output
    res = runner.invoke(cli, ["plan", "--requests", "1000", "--plot", str(tmp_path / "plan"),
                              "-o", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    for name in ("bucket_map", "latency", "attainment_per_bucket"):
        assert (tmp_path / "plan" / f"{name}.png").is_file(), name
    assert json.loads((tmp_path / "run" / "plan.json").read_text())["counts"]


def test_study_paper_cli_resumes_and_prints_the_savings(study_dir):
    res = CliRunner().invoke(cli, ["study", "paper", "--scenarios", "default", "--rates", "4", "--requests",
                                   str(REQUESTS), "--workers", "1", "--no-plot", "-o", str(study_dir[0])])
    assert res.exit_code == 0, res.output
    assert "5 of 5 points already finished" in res.output and "report.md" in res.output
    res = CliRunner().invoke(cli, ["study", "paper", "--scenarios", "nope", "-o", str(study_dir[0])])
    assert res.exit_code == 2


def test_a_type_taken_away_hands_its_buckets_to_the_others():
    from melange.core import Plan
    from melange.scenario import load_scenario
    from melange.validate.baselines import _without

    sc = load_scenario()
    shape = sc.workload.grid.shape
    a100, h100 = np.zeros(shape), np.zeros(shape)
    a100[3, 1], h100[3, 1] = 0.25, 0.75  # shared bucket: pro rata (all of it to the one other type)
    h100[5, 2] = 1.0  # only H100 there: to the cheapest $ per req/s among the types in use
    plan = Plan({"A100-80GB": 1, "H100": 2}, {"A100-80GB": a100, "H100": h100}, 0.0)
    share = _without(sc, plan, plan.counts, "H100")
    assert share["A100-80GB"][3, 1] == 1.0 and share["A100-80GB"][5, 2] == 1.0 and not share["H100"].any()
    assert _without(sc, plan, {"A100-80GB": 0, "H100": 2}, "H100") is None  # nobody left to take it
