"""The fast path (runs of decode steps as one event) against the exact step-by-step engine."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.core import BucketGrid, EngineConfig, LinearStepModel, Plan, Slo, Workload
from melange.sim import simulate
from melange.sim.steps import DecodeRun

GRID = BucketGrid((32, 256, 1024), (16, 128, 512))
SLO = Slo(tpot_ms=50.0)
MODEL = LinearStepModel(0.008, 1.2e-4, 1e-4, 4e-7, kv_capacity_tokens=6_000)  # small KV: preemptions


@dataclass(frozen=True)
class SqrtContextModel:
    """A non-linear StepTimeModel: exercises the fast path's step-by-step sum."""

    kv_capacity_tokens: int = 6_000

    def step_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        return 0.006 + 1e-4 * prefill_tokens + 2e-4 * decode_seqs + 2e-5 * math.sqrt(context_tokens)


def run(exact: bool, budget: int | None, model=MODEL, requests: int = 1500, seed: int = 5):
    workload = Workload(GRID, np.array([[0.3, 0.2], [0.3, 0.2]]), rate=8.0)
    plan = Plan({"G": 2}, {"G": np.ones(GRID.shape)}, cost=1.0)
    engine = EngineConfig(max_num_seqs=32, block_size=16, max_num_batched_tokens=budget)
    return simulate(plan, workload, {"G": model}, {"G": engine}, SLO, requests=requests, seed=seed,
                    exact=exact)


@pytest.mark.parametrize("budget", [None, 256], ids=["prefill-first", "chunked"])
def test_fast_path_matches_exact(budget):
    fast, exact = run(False, budget), run(True, budget)
    assert fast.summary["preemptions"] > 100 and exact.summary["preemptions"] > 100
    assert fast.summary["preemptions"] == exact.summary["preemptions"]
    for col in ("ttft_s", "tpot_mean_s", "tpot_decode_s"):
        for q in (50, 99):
            a = np.nanpercentile(fast.records[col], q)
            b = np.nanpercentile(exact.records[col], q)
            assert abs(a - b) <= 0.01 * b, (col, q, a, b)
    # Same decisions: the records themselves agree up to float rounding.
    assert np.allclose(fast.records["e2e_s"], exact.records["e2e_s"], rtol=1e-9, atol=1e-9)
    assert (fast.records["preemptions"] == exact.records["preemptions"]).all()


def test_fast_path_matches_exact_for_a_nonlinear_model():
    fast = run(False, 256, SqrtContextModel(), requests=600)
    exact = run(True, 256, SqrtContextModel(), requests=600)
    assert fast.summary["preemptions"] > 0
    assert np.allclose(fast.records["e2e_s"], exact.records["e2e_s"], rtol=1e-9, atol=1e-9)


def test_fast_path_takes_far_fewer_events():
    # The fast path must actually skip steps: it runs several times faster than exact.
    workload = Workload(GRID, np.array([[0.3, 0.2], [0.3, 0.2]]), rate=4.0)
    plan = Plan({"G": 2}, {"G": np.ones(GRID.shape)}, cost=1.0)
    big = LinearStepModel(0.008, 1.2e-4, 1e-4, 4e-7, kv_capacity_tokens=200_000)
    walls = [simulate(plan, workload, {"G": big}, {"G": EngineConfig()}, SLO, requests=800,
                      exact=exact).summary["wall_time_s"] for exact in (False, True)]
    assert walls[1] > 3 * walls[0]


@settings(max_examples=200, deadline=None)
@given(n=st.integers(1, 64), context=st.integers(0, 100_000), k=st.integers(1, 500),
       frac=st.floats(0.0, 1.0))
def test_decode_run_closed_form_equals_step_sum(n, context, k, frac):
    model = LinearStepModel(0.007, 1.2e-4, 1e-4, 3e-7, kv_capacity_tokens=10**6)
    steps = [model.step_time(0, n, context + n * s) for s in range(k)]
    run_ = DecodeRun(model, n, context, k)
    assert math.isclose(run_.total, sum(steps), rel_tol=1e-9)
    dt = frac * run_.total
    j = run_.steps_by(dt)
    # j is the step in progress at dt: it ends at or after dt, the one before ended before dt.
    assert 1 <= j <= k
    assert run_.elapsed(j) >= dt - 1e-12
    assert j == 1 or run_.elapsed(j - 1) < dt + 1e-12
    generic = DecodeRun(SqrtContextModel(), n, context, k)
    assert generic.steps_by(generic.total * frac) >= 1


def test_same_seed_same_records_different_seed_different():
    a, b, c = run(False, 256, seed=11, requests=300), run(False, 256, seed=11, requests=300), \
        run(False, 256, seed=12, requests=300)
    pd.testing.assert_frame_equal(a.records, b.records)
    assert a.summary["latency_s"] == b.summary["latency_s"]
    assert not a.records["arrival_s"].equals(c.records["arrival_s"])
    assert not a.records["e2e_s"].equals(c.records["e2e_s"])


@settings(max_examples=60, deadline=None)
@given(rate=st.floats(1.0, 30.0), kv=st.integers(300, 5000), block=st.sampled_from([1, 8, 16]),
       seqs=st.integers(1, 16), budget=st.one_of(st.none(), st.integers(8, 300)),
       count=st.integers(1, 3), router=st.sampled_from(["least_work", "round_robin", "random"]),
       seed=st.integers(0, 2**16))
def test_fast_path_equals_exact_on_random_configs(rate, kv, block, seqs, budget, count, router, seed):
    workload = Workload(GRID, np.array([[0.3, 0.2], [0.3, 0.2]]), rate=rate)
    plan = Plan({"G": count}, {"G": np.ones(GRID.shape)}, cost=1.0)
    model = LinearStepModel(0.008, 1.2e-4, 1e-4, 4e-7, kv_capacity_tokens=kv)
    engine = EngineConfig(max_num_seqs=seqs, block_size=block, max_num_batched_tokens=budget)
    fast, exact = (simulate(plan, workload, {"G": model}, {"G": engine}, SLO, requests=120, seed=seed,
                            router=router, exact=e).records for e in (False, True))
    pd.testing.assert_series_equal(fast["error"], exact["error"])
    pd.testing.assert_series_equal(fast["instance"], exact["instance"])
    pd.testing.assert_series_equal(fast["preemptions"], exact["preemptions"])
    for col in ("queue_s", "ttft_s", "e2e_s"):
        assert np.allclose(fast[col], exact[col], rtol=1e-9, atol=1e-9, equal_nan=True), col
