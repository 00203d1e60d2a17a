"""The fast path (runs of decode steps as one event) against the exact step-by-step engine."""

from __future__ import annotations

import functools
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
    j, seconds = run_.cut(dt)
    # j is the step in progress at dt: it ends at or after dt, the one before ended before dt.
    assert 1 <= j <= k and seconds == run_.elapsed(j)
    assert run_.elapsed(j) >= dt - 1e-12
    assert j == 1 or run_.elapsed(j - 1) < dt + 1e-12
    generic = DecodeRun(SqrtContextModel(), n, context, k)
    assert generic.cut(generic.total * frac)[0] >= 1


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


# --- closed-form runs of the roofline (decode_lines: max of two lines) ----------------------

@dataclass(frozen=True)
class ThreeLines:
    """A StepTimeModel whose decode steps are the max of three lines (two breakpoints)."""

    kv_capacity_tokens: int = 10**6

    def step_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        return max(self._lines(decode_seqs, context_tokens)[i][0] for i in range(3)) + 1e-4 * prefill_tokens

    def _lines(self, n, context):
        return ((0.01, 0.0), (0.005 + 1e-6 * context, 1e-6 * n), (-0.05 + 2e-6 * context, 2e-6 * n))

    def decode_lines(self, n, context):
        return self._lines(n, context)


@functools.lru_cache(maxsize=None)
def roofline(gpu: str, model: str):
    from melange.perf import step_model

    return step_model(gpu, model)


@settings(max_examples=150, deadline=None)
@given(gpu=st.sampled_from(["L4", "A100-80GB", "H100", "2xH100"]),
       model=st.sampled_from(["llama-2-7b", "mistral-7b"]),
       n=st.integers(1, 256), context=st.integers(0, 300_000), k=st.integers(1, 2000),
       frac=st.floats(0.0, 1.0))
def test_roofline_closed_form_equals_step_by_step(gpu, model, n, context, k, frac):
    m = roofline(gpu, model)
    steps = [m.step_time(0, n, context + n * s) for s in range(k)]
    run_ = DecodeRun(m, n, context, k)
    assert run_._cum is None  # the closed form, not the step sum
    assert math.isclose(run_.total, math.fsum(steps), rel_tol=1e-9)
    for j in (1, k // 2, k):
        assert math.isclose(run_.elapsed(j), math.fsum(steps[:j]), rel_tol=1e-9)
    dt = frac * run_.total
    j = run_.cut(dt)[0]
    assert 1 <= j <= k and run_.elapsed(j) >= dt - 1e-12
    assert j == 1 or run_.elapsed(j - 1) < dt + 1e-12


def test_roofline_runs_cross_from_compute_to_memory_bound():
    # A full batch on a short context is compute bound; as contexts grow the KV reads take over:
    # the run has a breakpoint, and the closed form still sums it exactly.
    from melange.perf import step_model

    m = step_model("A100-80GB", "llama-2-7b")
    n, context, k = 256, 0, 400
    assert m.compute_time(0, n, context) > m.memory_time(0, n, context)
    assert m.compute_time(0, n, context + n * k) < m.memory_time(0, n, context + n * k)
    run_ = DecodeRun(m, n, context, k)
    assert len(run_._pieces) == 2
    assert math.isclose(run_.total, math.fsum(m.step_time(0, n, context + n * s) for s in range(k)),
                        rel_tol=1e-12)


@settings(max_examples=100, deadline=None)
@given(n=st.integers(1, 64), context=st.integers(0, 50_000), k=st.integers(1, 3000),
       frac=st.floats(0.0, 1.0))
def test_envelope_of_three_lines_equals_step_by_step(n, context, k, frac):
    m = ThreeLines()
    assert len(DecodeRun(m, 10, 0, 10_000)._pieces) == 3  # the model does have three pieces
    steps = [m.step_time(0, n, context + n * s) for s in range(k)]
    run_ = DecodeRun(m, n, context, k)
    assert math.isclose(run_.total, math.fsum(steps), rel_tol=1e-9)
    j = run_.cut(frac * run_.total)[0]
    assert run_.elapsed(j) >= frac * run_.total - 1e-12
    assert j == 1 or run_.elapsed(j - 1) < frac * run_.total + 1e-12


@pytest.mark.parametrize("budget", [None, 256], ids=["prefill-first", "chunked"])
def test_fast_path_matches_exact_with_the_roofline(budget):
    from dataclasses import replace

    from melange.perf import step_model

    roof = replace(step_model("A10G", "llama-2-7b"), kv_capacity_tokens=6_000)  # preemptions too
    fast, exact = run(False, budget, roof, requests=600), run(True, budget, roof, requests=600)
    assert fast.summary["preemptions"] == exact.summary["preemptions"] > 0
    assert np.allclose(fast.records["e2e_s"], exact.records["e2e_s"], rtol=1e-9, atol=1e-9)
