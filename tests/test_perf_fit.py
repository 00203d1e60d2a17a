"""The least-squares fit: NNLS correctness and recovery of known step-time coefficients."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.core import LinearStepModel, MelangeError
from melange.perf.fit import fit_records, fit_steps, nnls, samples_from_records

TRUE = LinearStepModel(alpha=0.006, beta_prefill=1.2e-4, beta_decode=3e-4, beta_kv=2.5e-7,
                       kv_capacity_tokens=100_000)


def _close(fitted: LinearStepModel, true: LinearStepModel, rel: float) -> None:
    for name in ("alpha", "beta_prefill", "beta_decode", "beta_kv"):
        got, want = getattr(fitted, name), getattr(true, name)
        assert abs(got - want) <= rel * want, f"{name}: fitted {got:.4g}, true {want:.4g}"


def _engine_records(model: LinearStepModel, n: int, rate: float, rng: np.random.Generator,
                    inputs: tuple[int, int] = (20, 1500)) -> list[dict]:
    """A tiny vLLM-v0-style engine (prefill-only steps when prompts wait, else one decode step
    for the batch), emitting request records with ITL lists: the profiler's JSONL rows."""
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    inp = rng.integers(*inputs, n)
    out = rng.integers(5, 300, n)
    t, nxt = 0.0, 0
    running: dict[int, list[float]] = {}  # request -> token times
    sched: dict[int, float] = {}
    done: list[dict] = []
    while len(done) < n:
        arrived = int(np.searchsorted(arrival, t, side="right"))
        if arrived > nxt:
            batch = list(range(nxt, min(arrived, nxt + 8)))
            nxt = batch[-1] + 1
            dt = model.step_time(int(inp[batch].sum()), 0, 0) * rng.normal(1, 0.02)
            for i in batch:
                sched[i] = t
            t += dt
            for i in batch:
                running[i] = [t]
        elif running:
            ctx = sum(int(inp[i]) + len(ts) for i, ts in running.items())
            t += model.step_time(0, len(running), ctx) * rng.normal(1, 0.02)
            for i, ts in running.items():
                ts.append(t)
        else:
            t = float(arrival[nxt])
            continue
        for i in [i for i, ts in running.items() if len(ts) >= out[i]]:
            ts = running.pop(i)
            done.append(dict(request_id=i, arrival_s=arrival[i], input_tokens=int(inp[i]),
                             output_tokens=int(out[i]), queue_s=sched[i] - arrival[i],
                             ttft_s=ts[0] - arrival[i], e2e_s=ts[-1] - arrival[i],
                             itl_s=list(np.diff(ts)), error=None))
    return done


def test_nnls_matches_lstsq_when_unconstrained():
    rng = np.random.default_rng(1)
    a = rng.random((50, 4))
    x = np.array([1.0, 2.0, 0.5, 3.0])
    np.testing.assert_allclose(nnls(a, a @ x), x, rtol=1e-8)


def test_nnls_clips_a_negative_coefficient_to_zero():
    rng = np.random.default_rng(2)
    a = rng.random((80, 3))
    b = a @ np.array([1.0, -0.5, 2.0])
    x = nnls(a, b)
    assert (x >= 0).all() and x[1] == 0
    # KKT: the gradient is zero on free coefficients and points outward on clipped ones.
    grad = a.T @ (a @ x - b)
    assert abs(grad[0]) < 1e-8 and abs(grad[2]) < 1e-8 and grad[1] >= -1e-8


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_nnls_is_never_worse_than_any_nonneg_point(seed):
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(20, 4))
    b = rng.normal(size=20)
    x = nnls(a, b)
    assert (x >= 0).all()
    best = np.linalg.norm(a @ x - b)
    for _ in range(20):
        y = np.abs(rng.normal(size=4)) * rng.integers(0, 2, 4)
        assert best <= np.linalg.norm(a @ y - b) + 1e-9


def test_fit_recovers_coefficients_from_noisy_steps_within_5pct():
    rng = np.random.default_rng(0)
    n = 2000
    prefill = np.where(rng.random(n) < 0.3, rng.integers(1, 4000, n), 0)
    decode = rng.integers(0, 128, n)
    context = decode * rng.integers(50, 2000, n)
    t = np.array([TRUE.step_time(p, d, c) for p, d, c in zip(prefill, decode, context)])
    noisy = t * rng.normal(1.0, 0.03, n)  # 3 % multiplicative timing noise
    frame = pd.DataFrame(dict(prefill_tokens=prefill, decode_seqs=decode, context_tokens=context, step_s=noisy))
    res = fit_steps(frame, kv_capacity_tokens=TRUE.kv_capacity_tokens)
    _close(res.model, TRUE, 0.05)
    assert res.r2 > 0.95


def _profiler_runs(seed: int) -> list[dict]:
    """Records of runs at low and high rates on short and long prompts, one after another (as
    the profiler sweeps rates and buckets): the spread of batch sizes and contexts is what
    separates alpha, the per-sequence and the per-context-token terms."""
    rng = np.random.default_rng(seed)
    records, offset = [], 0.0
    for rate, inputs in ((1.0, (20, 200)), (10.0, (20, 200)), (1.0, (1000, 3000)), (4.0, (1000, 3000))):
        run = _engine_records(TRUE, 500, rate=rate, rng=rng, inputs=inputs)
        for r in run:
            r["arrival_s"] += offset
        offset = max(r["arrival_s"] + r["e2e_s"] for r in run) + 100.0
        records += run
    return records


def test_fit_recovers_coefficients_from_request_records_with_itls():
    records = _profiler_runs(3)
    res = fit_records(records, kv_capacity_tokens=TRUE.kv_capacity_tokens)
    _close(res.model, TRUE, 0.05)


def test_fit_from_records_without_itls_predicts_step_times():
    # Per-request means alone barely separate the per-sequence from the per-context-token cost
    # (a batch's context grows with its size), so check what the simulator uses: step times
    # over the batches the runs had, and the intercept and prefill cost.
    records = _profiler_runs(4)
    for r in records:
        del r["itl_s"]
    res = fit_records(records, kv_capacity_tokens=TRUE.kv_capacity_tokens)
    for name in ("alpha", "beta_prefill"):
        got, want = getattr(res.model, name), getattr(TRUE, name)
        assert abs(got - want) <= 0.10 * want, f"{name}: fitted {got:.4g}, true {want:.4g}"
    for decode, context in ((1, 300), (8, 2_000), (32, 8_000), (16, 35_000), (40, 85_000)):
        got, want = res.model.step_time(0, decode, context), TRUE.step_time(0, decode, context)
        assert abs(got - want) <= 0.15 * want, f"step({decode}, {context}): {got:.4g} vs {want:.4g}"


def test_samples_from_records_counts_prefill_steps_inside_a_gap():
    # Request 0 decodes at t = 1, 2, 4; request 1's prompt (50 tokens) is prefilled in (2, 4].
    recs = [dict(arrival_s=0.0, input_tokens=10, output_tokens=3, queue_s=0.0, ttft_s=1.0, e2e_s=4.0,
                 itl_s=[1.0, 2.0], error=None),
            dict(arrival_s=2.0, input_tokens=50, output_tokens=2, queue_s=0.5, ttft_s=1.0, e2e_s=3.0,
                 itl_s=[2.0], error=None)]
    s = samples_from_records(recs)
    gap = s[(s["step_s"] == 2.0) & (s["prefill_tokens"] == 50)]
    assert len(gap) == 1 and gap["steps"].iloc[0] == 2


def test_fit_needs_enough_samples():
    frame = pd.DataFrame(dict(prefill_tokens=[1], decode_seqs=[1], context_tokens=[1], step_s=[0.01]))
    with pytest.raises(MelangeError, match="at least 4 samples"):
        fit_steps(frame, 1000)
