"""Pinned record traces of tiny scenarios (computed by hand), routing, failures, plan checks, output."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from melange.core import BucketGrid, EngineConfig, LinearStepModel, MelangeError, Plan, Slo, Workload
from melange.sim import Arrivals, Simulation, check_plan, simulate

GRID = BucketGrid((1, 1000), (1, 1000))
WORKLOAD = Workload(GRID, np.ones((1, 1)), rate=1.0)
SLO = Slo(tpot_ms=1e9)
# 0.1 s per step plus 0.01 s per prompt token: easy to follow by hand.
MODEL = LinearStepModel(0.1, 0.01, 0.0, 0.0, kv_capacity_tokens=10_000)


def run_by_hand(times, prompts, outputs, *, count=1, engine=None, model=MODEL,
                exact=False, router="least_work", until=None):
    engine = engine or EngineConfig()
    n = len(times)
    arrivals = Arrivals(np.asarray(times, float), np.asarray(prompts), np.asarray(outputs),
                        np.zeros(n, int), np.zeros(n, int))
    plan = Plan({"G": count}, {"G": np.ones((1, 1))}, cost=1.0)
    sim = Simulation(plan, arrivals, WORKLOAD, {"G": model}, {"G": engine}, np.random.default_rng(0),
                     router=router, exact=exact)
    sim.run(until=until)
    return sim.result(SLO)


@pytest.mark.parametrize("exact", [False, True])
def test_prefill_first_then_batched_decode(exact):
    # t=0 A (10 tok) prefills until 0.2; B (at 0.05) waits, prefills 0.2-0.35; then both decode
    # (0.1 s steps): B's last token at 0.45, A's at 0.55.
    r = run_by_hand([0.0, 0.05], [10, 5], [3, 2], exact=exact).records
    assert np.allclose(r["queue_s"], [0.0, 0.15])
    assert np.allclose(r["ttft_s"], [0.2, 0.30])
    assert np.allclose(r["e2e_s"], [0.55, 0.40])
    assert np.allclose(r["tpot_decode_s"], [0.175, 0.10])


@pytest.mark.parametrize("exact", [False, True])
def test_arrival_mid_run_joins_at_the_next_step_boundary(exact):
    # A decodes in 0.1 s steps from 0.2 (boundaries 0.3, 0.4, 0.5...). B arrives at 0.45: the
    # step in progress finishes at 0.5, B prefills 0.5-0.65, A resumes: 6 more steps -> 1.25.
    r = run_by_hand([0.0, 0.45], [10, 5], [10, 2], exact=exact).records
    assert np.allclose(r["queue_s"], [0.0, 0.05])
    assert np.allclose(r["ttft_s"], [0.2, 0.2])
    assert np.allclose(r["e2e_s"], [1.25, 0.30])


@pytest.mark.parametrize("exact", [False, True])
def test_chunked_prefill_splits_the_prompt(exact):
    # Budget 4 tokens/step: a 10-token prompt takes 3 steps (4, 4, 2 tokens).
    engine = EngineConfig(max_num_batched_tokens=4)
    r = run_by_hand([0.0], [10], [2], engine=engine, exact=exact).records
    assert np.isclose(r["ttft_s"][0], 0.14 + 0.14 + 0.12)
    assert np.isclose(r["e2e_s"][0], 0.40 + 0.1)


@pytest.mark.parametrize("exact", [False, True])
def test_newest_is_preempted_and_recomputed(exact):
    # 4 blocks of 16 tokens. A and B hold 1 block each after prefill, take a second each at their
    # 17th token; at the 33rd both need a third with none free: B (newest) is preempted, and can
    # only come back (recompute 16 + 17 tokens = 3 blocks) when A has finished.
    model = LinearStepModel(0.1, 0.0, 0.0, 0.0, kv_capacity_tokens=64)
    r = run_by_hand([0.0, 0.0], [16, 16], [30, 30], engine=EngineConfig(block_size=16), model=model,
                    exact=exact).records
    assert list(r["preemptions"]) == [0, 1]
    assert r["error"].isna().all()
    assert r.loc[1, "e2e_s"] > r.loc[0, "e2e_s"]
    assert r.loc[0, "e2e_s"] == pytest.approx(0.1 * 30)  # A never waits: 1 prefill + 29 decode steps
    # B: 17 steps with A, waits until A ends at 3.0, recomputes (1 step), then 12 more tokens.
    assert r.loc[1, "e2e_s"] == pytest.approx(3.0 + 0.1 + 0.1 * 12)
    assert r.loc[1, "ttft_s"] == pytest.approx(0.1)


def test_requests_that_can_never_fit_fail_instead_of_hanging():
    model = LinearStepModel(0.1, 0.0, 0.0, 0.0, kv_capacity_tokens=256)
    res = run_by_hand([0.0, 0.1, 0.2], [100, 300, 10], [10, 10, 5000], model=model)
    r, s = res.records, res.summary
    assert list(r["error"].fillna("ok")) == ["ok", "too_long", "too_long"]
    assert s["failed"] == 2 and s["completed"] == 1 and s["errors"] == {"too_long": 2}
    whole = LinearStepModel(0.1, 0.0, 0.0, 0.0, kv_capacity_tokens=1600)  # 100 blocks, watermark 1
    alone = run_by_hand([0.0, 0.0], [1500, 10], [100, 5], model=whole).records
    assert alone["error"].isna().all()  # the whole cache, when nothing else runs
    assert alone.loc[1, "e2e_s"] < alone.loc[0, "e2e_s"]  # B squeezed in beside A and left early
    capped = run_by_hand([0.0], [100], [100], engine=EngineConfig(max_model_len=150)).records
    assert capped["error"][0] == "too_long"
    assert not capped["slo_met"][0]


def test_least_work_spreads_simultaneous_requests_and_round_robin_cycles():
    r = run_by_hand([0.0] * 3, [10] * 3, [50] * 3, count=3).records
    assert sorted(r["instance"]) == [0, 1, 2]
    # least work: the 4th request goes to the instance with the smallest request
    r = run_by_hand([0.0, 0.0, 0.0, 0.01], [10, 500, 500, 10], [50] * 4, count=3).records
    assert r["instance"][3] == r["instance"][0]
    rr = run_by_hand([0.0] * 6, [10] * 6, [5] * 6, count=3, router="round_robin").records
    assert list(rr["instance"]) == [0, 1, 2, 0, 1, 2]


def test_horizon_reports_in_flight_and_warmup_is_excluded():
    res = run_by_hand([0.0, 0.5, 1.0, 5.0], [10] * 4, [100] * 4, until=2.0)
    s = res.summary
    assert s["n_requests"] == 3 and s["in_flight_at_end"] == 3 and s["completed"] == 0
    sim = simulate(Plan({"G": 1}, {"G": np.ones((1, 1))}, cost=1.0), WORKLOAD, {"G": MODEL},
                   {"G": EngineConfig()}, SLO, requests=200, seed=3, warmup_s=50.0)
    assert sim.summary["counted"] == int((sim.records["arrival_s"] >= 50.0).sum()) < 200


def test_write_records_and_summary(tmp_path):
    res = run_by_hand([0.0, 0.05], [10, 5], [3, 2])
    paths = res.write(tmp_path / "out")
    assert [p.name for p in paths] == ["records.csv", "summary.json"]
    back = pd.read_csv(paths[0])
    assert list(back.columns[:13]) == list(res.records.columns[:13])
    assert {"tpot_mean_s", "tpot_decode_s", "slo_met"} <= set(back.columns)
    summary = json.loads(paths[1].read_text())
    assert summary["completed"] == 2 and summary["attainment"]["overall"] == 1.0
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        with pytest.raises(MelangeError, match=r"pip install -e '\.\[parquet\]'"):
            res.write(tmp_path / "pq", "parquet")


GRID2 = BucketGrid((1, 10, 100), (1, 10))
WORKLOAD2 = Workload(GRID2, np.array([[0.5], [0.5]]), rate=1.0)


@pytest.mark.parametrize("plan, names, message", [
    (Plan({"X": 1}, {"X": np.ones((2, 1))}, 1.0), ["A"], "GPU 'X' is not in the scenario"),
    (Plan({"A": 1}, {"A": np.ones((1, 2))}, 1.0), ["A"], "shape 1x2 does not match the 2x1 grid"),
    (Plan({"A": 1, "B": 1}, {"A": np.full((2, 1), 0.5), "B": np.full((2, 1), 0.4)}, 1.0), ["A", "B"],
     r"bucket \(0, 0\) .* sum to 0.9, not 1"),
    (Plan({"A": 1, "B": 0}, {"A": np.full((2, 1), 0.5), "B": np.full((2, 1), 0.5)}, 1.0), ["A", "B"],
     "GPU type with 0 instances"),
    (Plan({"A": 0}, {"A": np.ones((2, 1))}, 1.0), ["A"], "no instances"),
])
def test_check_plan_rejects_bad_plans(plan, names, message):
    with pytest.raises(MelangeError, match=message):
        check_plan(plan, WORKLOAD2, names)


def test_check_plan_needs_a_step_model_and_accepts_a_good_plan():
    plan = Plan({"A": 1, "B": 2}, {"A": np.array([[1.0], [0.3]]), "B": np.array([[0.0], [0.7]])}, 1.0)
    check_plan(plan, WORKLOAD2, ["A", "B"])
    with pytest.raises(MelangeError, match="GPU 'B' has no step_time"):
        check_plan(plan, WORKLOAD2, ["A", "B"], simulable=["A"])
    empty_bucket = Workload(GRID2, np.array([[1.0], [0.0]]), rate=1.0)
    check_plan(Plan({"A": 1}, {"A": np.array([[1.0], [0.0]])}, 1.0), empty_bucket, ["A"])


def test_progress_reports_simulated_time():
    seen = []
    quick = LinearStepModel(0.001, 1e-6, 0.0, 0.0, kv_capacity_tokens=10_000)
    r = simulate(Plan({"G": 1}, {"G": np.ones((1, 1))}, cost=1.0), WORKLOAD, {"G": quick},
                 {"G": EngineConfig()}, SLO, requests=9000, seed=1, progress=seen.append)
    assert len(seen) >= 3 and seen == sorted(seen)
    assert seen[-1] == pytest.approx(r.summary["sim_time_s"])
