"""Sweeps: cartesian points keyed by their inputs, durable and resumable, on a pool or Ray."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melange.cli import cli
from melange.core import MelangeError
from melange.files import read_jsonl
from melange.study import LocalExecutor, Sweep, evaluate_point, finished, run_sweep
from melange.study.point import code_version, point_key

DATA = Path(__file__).parent / "data"
SLICES = [1, 2, 4, 8, 16, 32, "continuous"]
STEP = {"alpha": 0.01, "beta_prefill": 0.0001, "beta_decode": 0.0002, "beta_kv": 1.0e-7,
        "kv_capacity_tokens": 40000}
TIMING = ["solve_s", "sim_s", "wall_s"]


def loop_scenario(tmp_path: Path, requests: int = 1500) -> Path:
    """One bucket, one simulable GPU type whose profile is honest (holds in simulation)."""
    doc = {"name": "loop", "grid": {"input_edges": [1, 200], "output_edges": [10, 60]},
           "workload": {"rate": 40, "distribution": [[1.0]]},
           "slo": {"tpot_ms": 60, "attainment": 0.95},
           "gpus": [{"name": "G", "cost": 1.0, "profile": [[20.0]], "step_time": STEP,
                     "engine": {"max_num_seqs": 32}}],
           "solver": {"slice_factor": 4},
           "simulation": {"requests": requests, "seed": 3, "warmup_s": 5}}
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(doc))
    return path


def test_points_are_the_cartesian_product_and_keys_follow_every_input():
    sweep = Sweep.create(DATA / "small.yaml", {"slice_factor": [1, "continuous"], "rate": [1, 2, 3]})
    points = sweep.points()
    assert len(points) == 6 and points[0] == {"slice_factor": 1, "rate": 1}
    keys = [sweep.key(p) for p in points]
    assert len(set(keys)) == 6
    assert sweep.key(dict(points[0])) == keys[0]  # same inputs, same key
    other = copy.deepcopy(sweep.doc)
    other["gpus"][0]["cost"] = 1.02
    assert point_key(other, points[0], False, sweep.code) != keys[0]  # scenario content
    assert point_key(sweep.doc, points[0], True, sweep.code) != keys[0]  # validate or not
    assert point_key(sweep.doc, {**points[0], "seed": 1}, False, sweep.code) != keys[0]
    assert point_key(sweep.doc, points[0], False, "other-code") != keys[0]


def test_profile_files_are_inlined_so_their_content_is_in_the_key():
    sweep = Sweep.create(DATA / "small.yaml", {"rate": [1]})
    a100 = yaml.safe_load((DATA / "a100_profile.yaml").read_text())["max_rate"]
    assert sweep.doc["gpus"][1]["profile"] == a100
    assert len(code_version()) == 16


def test_sweep_writes_the_table_and_a_rerun_skips_finished_points(tmp_path):
    sweep = Sweep.create(DATA / "small.yaml", {"slice_factor": [1, 2], "rate": [10, 30]})
    table = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    assert list(table["rate"]) == [10, 30, 10, 30]
    assert list(table["cost"]) == pytest.approx([3.67, 6.70, 3.67, 5.69])  # seed example: 3 A10G + 1 A100 at 30 req/s, S=1
    assert list(table["n_A10G"]) == [0, 3, 0, 2] and (table["status"] == "ok").all()
    assert (tmp_path / "table.csv").is_file()
    starts = []
    again = run_sweep(sweep, tmp_path, executor=LocalExecutor(1), on_start=lambda n, s: starts.append((n, s)))
    assert starts == [(4, 4)]
    assert len(list(read_jsonl(tmp_path / "points.jsonl"))) == 4  # nothing recomputed
    assert again.drop(columns=TIMING).equals(table.drop(columns=TIMING))


def _random_doc(draw) -> dict:
    shape = (draw(st.integers(1, 3)), draw(st.integers(1, 2)))
    n_gpus = draw(st.integers(1, 3))
    dist = np.array(draw(st.lists(st.floats(0.05, 1.0), min_size=shape[0] * shape[1],
                                  max_size=shape[0] * shape[1]))).reshape(shape)
    gpus = []
    for g in range(n_gpus):
        rates = draw(st.lists(st.floats(0.5, 20.0), min_size=dist.size, max_size=dist.size))
        gpus.append({"name": f"G{g}", "cost": draw(st.floats(0.5, 8.0)),
                     "profile": np.round(np.reshape(rates, shape), 3).tolist()})
    return {"name": "random",
            "grid": {"input_edges": list(range(1, shape[0] + 2)), "output_edges": list(range(1, shape[1] + 2))},
            "workload": {"rate": draw(st.floats(0.5, 60.0)), "distribution": (dist / dist.sum()).tolist()},
            "gpus": gpus}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_cost_never_increases_along_slice_factors(data):
    doc = _random_doc(data.draw)
    headroom = data.draw(st.sampled_from([0.0, 0.1]))
    costs = [evaluate_point(doc, {"slice_factor": s, "headroom": headroom}, False)["cost"] for s in SLICES]
    assert all(c is not None for c in costs)
    # Each slice factor divides the next, so every finer plan can copy a coarser one; continuous is the limit.
    assert all(b <= a + 1e-9 for a, b in zip(costs, costs[1:])), costs


def test_validated_point_reports_attainment_interval_held_and_times(tmp_path):
    sweep = Sweep.create(loop_scenario(tmp_path), {"rate": [10, 40]}, validate=True)
    table = run_sweep(sweep, tmp_path / "out", executor=LocalExecutor(1))
    assert list(table["held"]) == [True, True] and list(table["n_G"]) == [1, 2]
    for row in table.itertuples():
        assert row.attainment_lo <= row.attainment <= row.attainment_hi and row.attainment >= 0.95
        assert row.counted > 1000 and row.sim_s > 0 and row.seed == 3


def test_infeasible_point_is_a_row_not_a_crash(tmp_path):
    doc = yaml.safe_load((DATA / "small.yaml").read_text())
    doc["gpus"][0]["max_count"] = 0
    doc["gpus"][1] = {"name": "A100-80GB", "cost": 3.67, "profile": [[0, 0], [0, 0]]}
    row = evaluate_point(doc, {"rate": 5}, False)
    assert row["status"] == "infeasible" and "no GPU type can serve" in row["message"]
    assert row["cost"] is None


def test_slo_axis_is_refused_without_roofline_profiles(tmp_path):
    with pytest.raises(MelangeError, match="--slo-tpot"):
        Sweep.create(DATA / "small.yaml", {"slo_tpot_ms": [40.0]})
    result = CliRunner().invoke(cli, ["sweep", str(DATA / "small.yaml"), "--slo-tpot", "40ms", "-o", str(tmp_path)])
    assert result.exit_code == 2 and result.output.count("\n") == 1


def test_slo_axis_rebuilds_sim_profiles_for_the_swept_slo(tmp_path, monkeypatch):
    from melange.core import BucketGrid, Slo
    from melange.optimizer import solve
    from melange.perf import build_profile
    from melange.scenario import load_scenario

    monkeypatch.setenv("MELANGE_CACHE", str(tmp_path / "cache"))
    doc = {"name": "roof", "model": "llama-2-7b",
           "grid": {"input_edges": [1, 100, 400], "output_edges": [50, 200]},
           "workload": {"rate": 8, "distribution": [[0.5], [0.5]]},
           "slo": {"tpot_ms": 120, "attainment": 0.95},
           "gpus": [{"name": "A10G", "catalog": "A10G", "step_time": "roofline", "profile": [[30], [20]]}]}
    path = tmp_path / "roof.yaml"
    path.write_text(yaml.safe_dump(doc))
    sweep = Sweep.create(path, {"slo_tpot_ms": [40.0, 120.0]})
    table = run_sweep(sweep, tmp_path / "out", executor=LocalExecutor(1))
    grid = BucketGrid((1, 100, 400), (50, 200))
    built = build_profile("A10G", "llama-2-7b", Slo(40.0, attainment=0.95), grid, workers=1)
    sc = load_scenario(path)
    expected = solve(sc.workload, sc.gpus, {"A10G": built}, sc.solve)
    assert table["cost"].iloc[0] == pytest.approx(expected.cost)
    assert table["cost"].iloc[1] == pytest.approx(1.01)  # the scenario's own profile at its own SLO
    assert table["cost"].iloc[0] > table["cost"].iloc[1]  # a tighter SLO never costs less here


def test_sweep_cli_bad_axis_is_one_line(tmp_path):
    for flag, value in (("--rate", "1,x"), ("--slice-factor", "0"), ("--headroom", "-5%"), ("--rate", "1,,2")):
        result = CliRunner().invoke(cli, ["sweep", str(DATA / "small.yaml"), flag, value, "-o", str(tmp_path)])
        assert result.exit_code == 2, (flag, value, result.output)
        assert result.output.startswith("Error: ") and result.output.count("\n") == 1


def _start_then_signal(args: list[str], log: Path, sig: int, after: int) -> tuple[int, str]:
    """Run the sweep in a subprocess; send `sig` once `after` points are in the log."""
    proc = subprocess.Popen([sys.executable, "-c", "from melange.cli import main; main()", *args, "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "COLUMNS": "200"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(list(read_jsonl(log))) < after and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(sig)
    output, _ = proc.communicate(timeout=60)
    return proc.returncode, output


def test_interrupted_sweep_loses_nothing_and_recomputes_nothing(tmp_path):
    scenario = loop_scenario(tmp_path, requests=2500)
    args = ["sweep", str(scenario), "--validate", "--rate", "5,10,15,20,25,30,35,40,45,50,55,60",
            "-o", str(tmp_path / "out")]
    log = tmp_path / "out" / "points.jsonl"
    code, output = _start_then_signal(args, log, signal.SIGINT, after=2)
    assert code == 130 and "interrupted" in output, output
    first = list(read_jsonl(log))
    assert 2 <= len(first) < 12, "the sweep should stop part-way"
    assert (tmp_path / "out" / "table.csv").read_text().count("\n") == len(first) + 1

    code, output = _start_then_signal(args, log, signal.SIGTERM, after=len(first) + 2)
    assert code == 143 and f"{len(first)} of 12 points already finished: skipped" in output, output
    second = list(read_jsonl(log))
    assert second[:len(first)] == first and len(second) < 12

    result = CliRunner().invoke(cli, [*args, "--workers", "1"])
    assert result.exit_code == 0, result.output
    assert f"{len(second)} of 12 points already finished: skipped" in result.output
    after = list(read_jsonl(log))
    assert after[:len(second)] == second  # no finished point lost
    assert len(after) == 12 and len({line["key"] for line in after}) == 12  # none computed twice
    assert set(finished(tmp_path / "out")) == {line["key"] for line in after}


def test_ray_gives_the_same_table_as_the_process_pool(tmp_path):
    pytest.importorskip("ray")
    from melange.study import RayExecutor

    sweep = Sweep.create(loop_scenario(tmp_path), {"rate": [10, 40], "slice_factor": [1, 4]}, validate=True)
    pool = run_sweep(sweep, tmp_path / "pool", executor=LocalExecutor(2))
    ray_table = run_sweep(sweep, tmp_path / "ray", executor=RayExecutor(workers=2))
    assert ray_table.drop(columns=TIMING).equals(pool.drop(columns=TIMING))


def test_only_axis_gives_mélange_and_every_single_type_plan(tmp_path):
    from melange.optimizer import baselines
    from melange.scenario import load_scenario

    sweep = Sweep.create(DATA / "small.yaml", {"only": ["all", "A10G", "A100-80GB"], "rate": [30]})
    table = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    sc = load_scenario(DATA / "small.yaml")
    singles = baselines(sc.workload, sc.gpus, sc.profiles, sc.solve)
    assert list(table["only"]) == ["all", "A10G", "A100-80GB"]
    assert list(table["cost"][1:]) == pytest.approx([singles["A10G"].cost, singles["A100-80GB"].cost])
    assert table["cost"].iloc[0] <= table["cost"][1:].min()
    assert table["n_A100-80GB"].iloc[1] == 0 and table["n_A10G"].iloc[2] == 0
    with pytest.raises(MelangeError, match="--only"):
        Sweep.create(DATA / "small.yaml", {"only": ["H100"]})


def test_executor_choice_is_checked_before_work(tmp_path):
    from melange.study import make_executor

    with pytest.raises(MelangeError, match="--address"):
        make_executor("local", address="auto")
    with pytest.raises(MelangeError, match="--executor"):
        make_executor("dask")
    sweep = Sweep.create(DATA / "small.yaml", {"rate": [1, 1, 2]})
    assert len(sweep.points()) == 2  # a repeated value is one point
    try:
        import ray  # noqa: F401
    except ImportError:
        result = CliRunner().invoke(cli, ["sweep", str(DATA / "small.yaml"), "--executor", "ray", "-o", str(tmp_path)])
        assert result.exit_code == 2 and "melange[ray]" in result.output


def test_a_point_that_crashes_is_an_error_row_and_the_sweep_goes_on(tmp_path, monkeypatch):
    import melange.validate

    def broken(sc, **kwargs):
        if sc.workload.rate > 20:
            raise RuntimeError("boom")
        return real(sc, **kwargs)

    real = melange.validate.plan_cheapest
    monkeypatch.setattr(melange.validate, "plan_cheapest", broken)
    sweep = Sweep.create(loop_scenario(tmp_path), {"rate": [10, 40]}, validate=True)
    table = run_sweep(sweep, tmp_path / "out", executor=LocalExecutor(1))
    assert list(table["status"]) == ["ok", "error"]
    assert table["message"].iloc[1] == "RuntimeError: boom" and np.isnan(table["cost"].iloc[1])


def test_parquet_table_matches_the_csv_when_pyarrow_is_installed(tmp_path):
    pytest.importorskip("pyarrow")
    import pandas as pd

    sweep = Sweep.create(DATA / "small.yaml", {"slice_factor": [1, "continuous"], "rate": [10, 30]})
    table = run_sweep(sweep, tmp_path, executor=LocalExecutor(1))
    parquet = pd.read_parquet(tmp_path / "table.parquet")
    assert list(parquet["slice_factor"]) == ["1", "1", "continuous", "continuous"]
    assert list(parquet["cost"]) == list(table["cost"]) and list(parquet.columns) == list(table.columns)


def test_validated_point_reads_a_confirmed_plans_report(tmp_path, monkeypatch):
    """The validate package's PlanReport (confirmation on fresh seeds) feeds the same columns."""
    import melange.validate
    from melange.core import Plan

    from melange.validate import Confirmation, PlanReport, Round

    plan = Plan({"G": 2}, {"G": np.ones((1, 1))}, 2.0, solve_time_s=0.01)
    conf = Confirmation(True, 0.996, (0.993, 0.998), 0.95, 12000, [4, 5], [])
    report = PlanReport([Round(1, plan, 0.99, True)], plan, 0.95, validation=conf, choice="mix")
    monkeypatch.setattr(melange.validate, "plan_cheapest", lambda sc, **kw: report)
    doc = yaml.safe_load(loop_scenario(tmp_path).read_text())
    row = evaluate_point(doc, {"rate": 40}, True)
    assert row["status"] == "ok" and row["held"] is True and row["counts"] == {"G": 2}
    assert (row["attainment"], row["attainment_lo"], row["attainment_hi"], row["counted"]) == (0.996, 0.993, 0.998, 12000)
