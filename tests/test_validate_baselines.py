"""Validated single-type baselines: the fewest instances that hold, and savings quoted from them."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.scenario import load_scenario
from melange.validate import (
    confirm,
    plan_and_validate,
    run_settings,
    saving,
    single_type_plan,
    validated_baselines,
)
from melange.validate.baselines import confirmation_seeds, smallest_holding
from tests.validate_scenarios import scenario, two_buckets


@settings(max_examples=200, deadline=None)
@given(truth=st.integers(1, 60), start=st.integers(1, 60))
def test_smallest_holding_finds_the_boundary_from_any_start(truth, start):
    calls = []

    def holds(n):
        calls.append(n)
        return n >= truth

    assert smallest_holding(holds, start, 1, 60) == truth
    assert truth in calls and (truth == 1 or truth - 1 in calls)  # the answer held, one fewer failed
    assert len(set(calls)) <= 2 * abs(truth - start).bit_length() + 3  # galloping, not a walk


def test_smallest_holding_gives_up_at_the_limit():
    assert smallest_holding(lambda n: False, 2, 1, 6) is None


def test_baseline_is_the_fewest_that_hold_and_one_fewer_fails(tmp_path):
    sc = load_scenario(scenario(tmp_path, max_rate=200.0))  # the solver's count (1) is too few
    b = validated_baselines(sc)["G"]
    assert b.solver_count == 1 and b.count > b.solver_count and b.cost == b.count * 1.0
    assert b.tried[b.count] and not b.tried[b.count - 1]
    settings, seeds = run_settings(sc), confirmation_seeds(sc.simulation.seed, 2)
    assert confirm(sc, single_type_plan(sc, "G", b.count), seeds, settings).held
    assert not confirm(sc, single_type_plan(sc, "G", b.count - 1), seeds, settings).held


def test_a_type_that_cannot_serve_a_bucket_has_no_baseline_and_saving_uses_the_valid_ones(tmp_path):
    sc = load_scenario(two_buckets(tmp_path))
    singles = validated_baselines(sc, requests=1500)
    assert singles["S"].count is None and "cannot serve" in singles["S"].reason
    report = plan_and_validate(sc, max_rounds=6, requests=1500)
    s = saving(report.best, singles)
    assert s["against"] == "G" and s["fraction"] == pytest.approx(1 - report.best.cost / singles["G"].cost)


def test_default_scenario_baselines_are_minimal_and_the_saving_comes_from_them():
    # Must show (issue 7): every baseline's count is the smallest that holds (count - 1 fails),
    # and the saving is computed from them. A shortened run (1,000 counted requests per run).
    sc = load_scenario()
    singles = validated_baselines(sc, requests=1000)
    valid = {g: b for g, b in singles.items() if b.count is not None}
    assert valid, singles
    for name, b in valid.items():
        assert b.tried[b.count] and (b.count == 1 or b.tried[b.count - 1] is False), (name, b.tried)
        assert b.confirmation.held and b.confirmation.counted >= 2 * 500
    report = plan_and_validate(sc, requests=1000)
    cheapest = min(valid.values(), key=lambda b: b.cost)
    s = saving(report.best, singles)
    assert s["against"] == cheapest.gpu and s["baseline_cost"] == cheapest.cost
    assert s["fraction"] == pytest.approx(1 - report.best.cost / cheapest.cost)
