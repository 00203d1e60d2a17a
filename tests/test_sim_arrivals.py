"""Arrival processes and request lengths drawn up front for the simulator."""

from __future__ import annotations

import numpy as np
import pytest

from melange.core import Arrival, BucketGrid, EngineConfig, LinearStepModel, MelangeError, Plan, Slo, Workload
from melange.sim import make_arrivals, simulate
from melange.sim.router import choose_types, type_table
from melange.traces import load_trace

GRID = BucketGrid.paper()


def conv_workload(rate: float, arrival: Arrival | None = None, lengths: str = "uniform") -> Workload:
    arrival = arrival or Arrival()
    trace = load_trace("splitwise_conv")
    return Workload(GRID, GRID.histogram(trace.input_tokens, trace.output_tokens), rate,
                    arrival=arrival, lengths=lengths, trace="splitwise_conv")


def test_poisson_rate_and_exponential_gaps():
    a = make_arrivals(conv_workload(20.0), np.random.default_rng(0), requests=50_000)
    gaps = np.diff(np.concatenate([[0.0], a.time_s]))
    assert abs(gaps.mean() * 20.0 - 1) < 0.02
    assert abs(gaps.std() / gaps.mean() - 1) < 0.03  # CV of an exponential is 1


@pytest.mark.parametrize("cv", [0.5, 3.0])
def test_gamma_gaps_have_the_requested_cv(cv):
    w = conv_workload(10.0, Arrival("gamma", cv=cv))
    a = make_arrivals(w, np.random.default_rng(1), requests=100_000)
    gaps = np.diff(a.time_s)
    assert abs(gaps.mean() * 10.0 - 1) < 0.03
    assert abs(gaps.std() / gaps.mean() - cv) / cv < 0.05


def test_duration_bounds_arrivals():
    a = make_arrivals(conv_workload(30.0), np.random.default_rng(2), duration_s=600.0)
    assert a.time_s.max() < 600.0
    assert abs(len(a) / (30.0 * 600.0) - 1) < 0.05
    assert np.all(np.diff(a.time_s) >= 0)


def test_uniform_lengths_fall_inside_their_bucket_with_the_right_mix():
    w = conv_workload(5.0)
    a = make_arrivals(w, np.random.default_rng(3), requests=40_000)
    i, j = GRID.bucket_of(a.input_tokens, a.output_tokens)
    assert (i == a.bucket_in).all() and (j == a.bucket_out).all()
    hist = GRID.histogram(a.input_tokens, a.output_tokens)
    assert np.abs(hist - w.distribution).max() < 0.01


def test_trace_lengths_are_real_requests_of_that_bucket():
    w = conv_workload(5.0, lengths="trace")
    a = make_arrivals(w, np.random.default_rng(4), requests=5_000)
    trace = load_trace("splitwise_conv")
    real = set(zip(trace.input_tokens.tolist(), trace.output_tokens.tolist()))
    assert all(p in real for p in zip(a.input_tokens.tolist(), a.output_tokens.tolist()))
    i, j = GRID.bucket_of(a.input_tokens, a.output_tokens)
    assert (i == a.bucket_in).all() and (j == a.bucket_out).all()


def test_trace_replay_keeps_timestamps_and_lengths():
    trace = load_trace("splitwise_conv")
    w = conv_workload(5.53, Arrival("trace", trace="splitwise_conv", scale_to_rate=False))  # its own rate
    a = make_arrivals(w, np.random.default_rng(0), requests=1000)
    assert np.array_equal(a.time_s, trace.arrival_s[:1000])
    assert np.array_equal(a.input_tokens, trace.input_tokens[:1000])
    assert np.array_equal(a.output_tokens, trace.output_tokens[:1000])


@pytest.mark.parametrize("rate", [2.0, 40.0])
def test_trace_replay_scaled_to_a_rate(rate):
    w = conv_workload(rate, Arrival("trace", trace="splitwise_conv", scale_to_rate=True))
    a = make_arrivals(w, np.random.default_rng(0))  # the whole trace once
    assert len(a) == len(load_trace("splitwise_conv"))
    assert abs((len(a) - 1) / a.time_s[-1] / rate - 1) < 0.02
    looped = make_arrivals(w, np.random.default_rng(0), requests=50_000)  # more than the trace
    assert len(looped) == 50_000 and np.all(np.diff(looped.time_s) >= 0)
    assert abs(len(looped) / looped.time_s[-1] / rate - 1) < 0.03


def test_trace_without_timestamps_cannot_be_replayed():
    w = conv_workload(5.0, Arrival("trace", trace="arxiv_summarization_stats_llama2_tokenizer_filtered_v2"))
    with pytest.raises(MelangeError, match="no arrival-time column"):
        make_arrivals(w, np.random.default_rng(0), requests=10)


def test_replayed_trace_simulates_end_to_end():
    w = conv_workload(8.0, Arrival("trace", trace="splitwise_conv"))
    plan = Plan({"G": 4}, {"G": np.ones(GRID.shape)}, cost=1.0)
    model = LinearStepModel(0.006, 1.2e-4, 5e-5, 3e-7, kv_capacity_tokens=200_000)
    r = simulate(plan, w, {"G": model}, {"G": EngineConfig()}, Slo(tpot_ms=100), duration_s=120.0)
    assert r.summary["completed"] + r.summary["failed"] == r.summary["n_requests"] > 600
    assert r.summary["attainment"]["overall"] > 0.9


def test_type_choice_follows_the_plan_shares():
    grid = BucketGrid((1, 10, 100), (1, 10))
    plan = Plan({"a": 1, "b": 1}, {"a": np.array([[0.25], [1.0]]), "b": np.array([[0.75], [0.0]])}, 1.0)
    table = type_table(plan, ["a", "b"], grid.shape)
    rng = np.random.default_rng(0)
    n = 40_000
    types = choose_types(table, grid, np.full(n, 5), np.full(n, 3), rng)
    assert abs((types == 1).mean() - 0.75) < 0.01
    assert (choose_types(table, grid, np.full(100, 50), np.full(100, 3), rng) == 0).all()
    # beyond the grid: routed as the nearest (last) input bucket, which only "a" serves
    assert (choose_types(table, grid, np.full(100, 5000), np.full(100, 30), rng) == 0).all()


def test_a_trace_is_parsed_once_until_its_file_changes(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("input_tokens,output_tokens\n10,5\n20,6\n")
    first = load_trace(path)
    assert load_trace(path) is first  # sweeps simulate one trace many times: no re-parse
    with pytest.raises(ValueError):
        first.input_tokens[0] = 99  # shared by every caller, so nobody may change it
    path.write_text("input_tokens,output_tokens\n10,5\n20,7\n")  # same size, maybe same mtime
    assert load_trace(path).output_tokens.tolist() == [5, 7]  # a changed file is read again
