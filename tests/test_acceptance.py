"""The one acceptance rule (melange/acceptance.py) on runs with known answers."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.acceptance import AcceptanceRule, judge, mean_in_system, number_in_system, wilson_interval


def fifo_queue(rate: float, service_s: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """M/D/1 by Lindley's recursion: (arrival times, departure times)."""
    rng = np.random.default_rng(seed)
    arrival = np.cumsum(rng.exponential(1 / rate, n))
    finish = np.empty(n)
    free_at = 0.0
    for k, t in enumerate(arrival):
        free_at = max(free_at, t) + service_s
        finish[k] = free_at
    return arrival, finish


def test_a_steady_queue_passes_and_an_overloaded_one_fails():
    arrival, finish = fifo_queue(1.0, 0.6, 4000, seed=1)
    ok = judge(arrival, finish, np.ones(len(arrival), bool), 0.99, warmup_s=100)
    assert ok.passed and ok.stable and 0.95 <= ok.throughput_ratio <= 1.05
    arrival, finish = fifo_queue(1.0, 1.1, 4000, seed=1)  # rho = 1.1: grows ~0.1 req/s
    bad = judge(arrival, finish, np.ones(len(arrival), bool), 0.99, warmup_s=100)
    assert not bad.passed and not bad.stable and bad.reason.startswith("unstable")


def test_in_flight_requests_count_as_missed_and_too_few_is_refused():
    arrival = np.linspace(0, 100, 1001)
    finish = arrival + 0.5
    finish[-30:] = np.nan  # still in flight: not met
    v = judge(arrival, finish, np.ones(1001, bool), 0.99)
    assert v.attainment < 0.99 and v.reason.startswith("SLO")
    few = judge(arrival[:150], finish[:150], np.ones(150, bool), 0.99)
    assert not few.passed and few.reason.startswith("too few") and few.counted == 150


def test_min_counted_expects_five_misses():
    rule = AcceptanceRule()
    assert rule.min_counted(0.99) == 500 and rule.min_counted(0.9) == 200
    assert rule.min_counted(0.999) == 5000


def test_mean_in_system_integrates_the_step_function():
    times, level = number_in_system(np.array([0.0, 1.0]), np.array([2.0, 3.0]))
    assert mean_in_system(times, level, 0.0, 4.0) == (1 + 2 + 1 + 0) / 4


@settings(max_examples=25, deadline=None, derandomize=True)
@given(rho=st.floats(0.05, 0.75), seed=st.integers(0, 10_000))
def test_stable_md1_queues_pass_the_stability_checks(rho, seed):
    arrival, finish = fifo_queue(1.0, rho, 6000, seed)
    v = judge(arrival, finish, np.ones(len(arrival), bool), 0.99, warmup_s=200)
    assert v.stable, v.reason


@given(st.integers(0, 500), st.integers(1, 500))
def test_wilson_interval_contains_the_estimate(k, n):
    k = min(k, n)
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1


def test_wilson_interval_pinned_to_published_values():
    """Issue 16 (a test that could not fail): the Wilson score interval's textbook values."""
    assert tuple(round(v, 4) for v in wilson_interval(990, 1000)) == (0.9817, 0.9946)
    assert tuple(round(v, 4) for v in wilson_interval(0, 10)) == (0.0, 0.2775)
    assert tuple(round(v, 4) for v in wilson_interval(10, 10)) == (0.7225, 1.0)
