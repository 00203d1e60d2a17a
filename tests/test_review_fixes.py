"""Issue 16: numbers reported with the plan they belong to, keys built from what results depend
on, figures from the current run's points, plots and runs that count what `plan` counts."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from melange.cli import cli
from melange.core import Plan
from melange.scenario import load_scenario
from tests.validate_scenarios import scenario


def test_a_plan_that_never_held_is_not_shown_with_an_earlier_rounds_confirmation():
    """Issue 16.1: counts {'A10G': 5} beside round 1's 0.9861 over 8,000 (round 1's plan had 4)."""
    from melange.validate import Confirmation, PlanReport, Round

    one, two = (Plan({"A10G": n}, {"A10G": np.ones((1, 1))}, n * 1.01) for n in (4, 5))
    first = Round(1, one, 0.995, False, confirmation=Confirmation(False, 0.9861, (0.98, 0.99), 0.99, 8000, [1, 2],
                                                                  ["bucket (0, 0): low"]))
    second = Round(2, two, 0.9712, False, reason="SLO: attainment 0.9712 below 0.99")
    doc = PlanReport([first, second], None, 0.99).to_dict()
    assert doc["counts"] == {"A10G": 5}
    assert doc["validation"]["attainment"] is None and doc["validation"]["counted"] is None


def test_the_resume_key_changes_with_a_traces_contents_and_the_code(tmp_path, monkeypatch):
    """Issue 16.3: replacing a trace's smooth arrivals with bursty ones left inputs_hash unchanged."""
    import melange.validate.store as store

    trace = tmp_path / "t.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{k * 0.1},50,20\n" for k in range(50)))
    path = scenario(tmp_path, max_rate=20.0, workload={"trace": str(trace), "arrival": {"process": "trace"}})
    before = store.inputs_hash(load_scenario(path), requests=600)
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "".join(f"{(k // 10) * 1.0},50,20\n" for k in range(50)))
    after = store.inputs_hash(load_scenario(path), requests=600)
    assert before != after
    monkeypatch.setattr(store, "code_digest", lambda files: "other code")
    assert store.inputs_hash(load_scenario(path), requests=600) != after


def test_sweep_points_are_keyed_by_every_file_a_result_depends_on():
    """Issue 16.3: editing rate_search.py or units.py reused stale points."""
    from melange.keys import RESULT_CODE_FILES

    assert "rate_search.py" in RESULT_CODE_FILES and "units.py" in RESULT_CODE_FILES


def test_plan_figures_count_only_the_counted_requests(tmp_path):
    """Issue 16.5: per-bucket n summed to 1,480 for 1,000 counted (the warm-up was plotted)."""
    from melange.study.figures import plan_records

    sc = load_scenario(scenario(tmp_path, max_rate=20.0))
    plan = Plan({"G": 3}, {"G": np.ones((1, 1))}, 3.0)
    records = plan_records(sc, plan, seed=5, requests=1000)
    assert len(records) == 1000


def test_simulate_requests_are_counted_after_the_warm_up_as_in_plan(tmp_path):
    """Issue 16.7: `simulate --requests 2920` said "no request was counted (warm-up too long?)"."""
    path = scenario(tmp_path, max_rate=20.0, simulation={"warmup_s": 60})
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(Plan({"G": 3}, {"G": np.ones((1, 1))}, 3.0).to_dict()))
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["simulate", path, "--plan", str(plan), "--requests", "1000", "-o", str(out)])
    assert result.exit_code in (0, 1) and "no request was counted" not in result.output, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert abs(summary["counted"] - 1000) < 100  # 40 req/s x 60 s of warm-up on top, Poisson times


def test_study_figures_come_from_this_runs_points(tmp_path, monkeypatch):
    """Issue 16.4: a sweep at rate 4 drew its figure "at 32 req/s" from an old line of points.jsonl."""
    import melange.study.figures as figures
    from melange.study.paper import best_plan_figures
    from melange.study.point import portable_document

    doc, _ = portable_document(scenario(tmp_path, max_rate=20.0))
    plan = Plan({"G": 3}, {"G": np.ones((1, 1))}, 3.0).to_dict()
    lines = [{"key": k, "point": {"only": "all", "rate": r}, "result": {"held": True, "plan": plan}}
             for k, r in (("old", 32.0), ("new", 4.0))]
    (tmp_path / "points.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    titles = []
    monkeypatch.setattr(figures, "plan_figures", lambda sc, plan, out, **kw: titles.append(kw["title"]) or [])
    best_plan_figures(tmp_path, doc, tmp_path / "figs", "t", requests=600, keys={"new"})
    assert titles == ["t at 4 req/s"]


def test_the_interval_widens_when_misses_come_in_bursts():
    """Issue 16.2: across 16 seeds the attainment's sd was 0.0133 against a binomial 0.0017. Ten
    spans of 1,000 requests: the same 100 misses spread evenly, or all in one span."""
    from melange.acceptance import batch_interval, overdispersion, wilson_interval

    even = np.array([[990.0, 1000.0]] * 10)
    burst = np.array([[1000.0, 1000.0]] * 9 + [[900.0, 1000.0]])
    assert batch_interval(even) == wilson_interval(9900, 10000)  # no spread: the binomial interval
    lo, hi = batch_interval(burst)
    assert round(lo, 4) == 0.9674 and hi == 1.0  # 0.99 -/+ t(9) x 0.01 (from the spans' spread)
    assert overdispersion(even) == 1.0 and round(overdispersion(burst)) == 101  # 100x the binomial variance: 1/101 as many independent requests


def test_outputs_are_written_with_the_users_umask(tmp_path):
    """Issue 16: plan.json, table.csv and profiles were 0600 where other outputs are 0644."""
    import os

    from melange.files import atomic_write_text

    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "plan.json", "{}")
    finally:
        os.umask(old)
    assert (path.stat().st_mode & 0o777) == 0o644


def test_sweep_limits_are_checked_before_any_work(tmp_path):
    """Issue 16: `--rate 2000000` and `--seed -1` were accepted, `--slice-factor 5000` failed per
    point, `--plot /dev/null` gave a traceback after all the work, a failed sweep left an empty folder."""
    for args, field in ((["--rate", "2000000"], "--rate"), (["--seed", "-1"], "--seed"),
                        (["--slice-factor", "5000"], "--slice-factor"), (["--plot", "/dev/null"], "--plot")):
        out = tmp_path / field.strip("-")
        result = CliRunner().invoke(cli, ["sweep", "default", *args, "-o", str(out)])
        assert result.exit_code == 2 and field in result.output and "Traceback" not in result.output, result.output
    result = CliRunner().invoke(cli, ["compare", "default", "--rate", "4", "--plot", "/dev/null", "-o",
                                      str(tmp_path / "c")])
    assert result.exit_code == 2 and "--plot" in result.output


def test_a_failed_point_says_why_and_the_sweep_exits_1(tmp_path, monkeypatch):
    """Issue 16: sweep/compare/study showed only "error" for a failed point, and exited 0."""
    import melange.study.point as point

    real = point.apply_point

    def broken(doc, p):
        if p.get("rate") == 30.0:
            raise ValueError("expected non-negative integer")
        return real(doc, p)

    monkeypatch.setattr(point, "apply_point", broken)
    from pathlib import Path

    small = Path(__file__).parent / "data" / "small.yaml"
    result = CliRunner().invoke(cli, ["sweep", str(small), "--rate", "10,30", "--workers", "1", "-o", str(tmp_path / "s")])
    assert result.exit_code == 1
    assert "error at rate=30.0: ValueError: expected non-negative integer" in result.output


def test_bad_input_leaves_no_output_folder(tmp_path):
    """Issue 16: failed compare/sweep left empty output folders (and the tests an empty
    compare-default/ in the repository root)."""
    for args in (["compare", "default", "--rate", "x", "-o", str(tmp_path / "c")],
                 ["sweep", "default", "--rate", "0", "-o", str(tmp_path / "s")],
                 ["study", "paper", "--scenarios", "nope", "-o", str(tmp_path / "p")]):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2, result.output
    assert list(tmp_path.iterdir()) == []


def test_tables_fold_to_columns_when_piped():
    """Issue 16: `scenarios list` piped with COLUMNS=80 printed 250-column lines."""
    import subprocess
    import sys

    env = {**__import__("os").environ, "COLUMNS": "80"}
    out = subprocess.run([sys.executable, "-c", "from melange.cli import main; main()", "scenarios", "list"],
                         capture_output=True, text=True, env=env, check=True).stdout
    assert max(len(line) for line in out.splitlines()) <= 80 and "mixed-40ms" in out.replace("\n", "")


def test_an_error_row_is_tried_again_and_builtin_traces_travel_by_name(tmp_path, monkeypatch):
    """Issue 16 (Ray): every point failed on another node with the driver's absolute trace path,
    and the error rows counted as finished, so a re-run skipped them all."""
    import melange.study.point as point
    from melange.study import LocalExecutor, Sweep, run_sweep
    from melange.study.point import portable_document

    doc, _ = portable_document("chat-120ms")
    assert doc["workload"]["trace"] == "arena_synthetic"  # resolved by name wherever it runs
    small = __import__("pathlib").Path(__file__).parent / "data" / "small.yaml"
    sweep = Sweep.create(small, {"rate": [10]})
    real = point.apply_point
    monkeypatch.setattr(point, "apply_point", lambda d, p: (_ for _ in ()).throw(OSError("no such file")))
    first = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    monkeypatch.setattr(point, "apply_point", real)
    second = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert list(first["status"]) == ["error"] and list(second["status"]) == ["ok"]
