"""Optimizer options, infeasibility messages and the independent plan check."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.core import BucketGrid, GpuType, MelangeError, Profile, SolveOptions, Workload
from melange.optimizer import baselines, plan_violations, solve
from melange.optimizer.instances import random_instance


def two_by_two():
    """The seed's example: A10G + A100 over a 2x2 grid at 30 req/s."""
    grid = BucketGrid((1, 2, 3), (1, 2, 3), indexed=True)
    workload = Workload(grid, np.array([[0.2, 0.1], [0.5, 0.2]]), 30.0)
    gpus = [GpuType("A10G", 1.01), GpuType("A100-80GB", 3.67)]
    profiles = {"A10G": Profile("A10G", np.array([[2.0, 1.0], [5.0, 2.0]])),
                "A100-80GB": Profile("A100-80GB", np.array([[20.0, 20.0], [40.0, 20.0]]))}
    return workload, gpus, profiles


def test_seed_example_optimum():
    workload, gpus, profiles = two_by_two()
    plan = solve(workload, gpus, profiles, SolveOptions(slice_factor=1))
    assert plan.counts == {"A10G": 3, "A100-80GB": 1}
    assert math.isclose(plan.cost, 6.7)
    # The seed put A10G on bucket (0, 0); A10G on (1, 0) costs the same $6.70/h: either optimum.
    a10g = [(i, j) for i in range(2) for j in range(2) if plan.share["A10G"][i, j] == 1.0]
    assert a10g in ([(0, 0)], [(1, 0)]) and plan_violations(plan, workload, gpus, profiles, SolveOptions(slice_factor=1)) == []


def test_headroom_scales_the_served_rate():
    workload, gpus, profiles = two_by_two()
    # Serving 30 req/s x 2 must cost the same as serving 60 req/s.
    doubled = solve(workload, gpus, profiles, SolveOptions(slice_factor=4, headroom=1.0))
    at_60 = solve(replace(workload, rate=60.0), gpus, profiles, SolveOptions(slice_factor=4))
    assert math.isclose(doubled.cost, at_60.cost)
    assert doubled.cost > solve(workload, gpus, profiles, SolveOptions(slice_factor=4)).cost


def test_utilization_ceiling_leaves_spare_capacity():
    workload, gpus, profiles = two_by_two()
    options = SolveOptions(slice_factor=4, utilization=0.5)
    plan = solve(workload, gpus, profiles, options)
    assert plan_violations(plan, workload, gpus, profiles, options) == []
    # The same plan loaded against the full profile is at most half used.
    rates = workload.bucket_rates()
    for g in gpus:
        load = np.sum(plan.share[g.name] * rates / np.where(profiles[g.name].max_rate > 0,
                                                             profiles[g.name].max_rate, np.inf))
        assert load <= 0.5 * plan.counts[g.name] + 1e-9


def test_per_type_ceiling_overrides_the_default():
    workload, gpus, profiles = two_by_two()
    capped = [replace(gpus[0], utilization=0.1), gpus[1]]
    plan = solve(workload, capped, profiles, SolveOptions(slice_factor=4))
    assert plan.counts["A10G"] == 0  # at 10 % an A10G is never worth it


def test_max_and_min_counts_hold():
    workload, gpus, profiles = two_by_two()
    gpus = [replace(gpus[0], min_count=5), replace(gpus[1], max_count=1)]
    plan = solve(workload, gpus, profiles, SolveOptions(slice_factor=8))
    assert plan.counts["A10G"] >= 5 and plan.counts["A100-80GB"] <= 1
    assert plan_violations(plan, workload, gpus, profiles, SolveOptions(slice_factor=8)) == []


def test_zero_cell_means_cannot_serve():
    workload, gpus, profiles = two_by_two()
    profiles["A100-80GB"].max_rate[0, 0] = 0.0  # the seed divides by zero here
    plan = solve(workload, gpus, profiles, SolveOptions(slice_factor=2))
    assert plan.share["A100-80GB"][0, 0] == 0.0 and plan.share["A10G"][0, 0] == 1.0


def test_unservable_bucket_is_named():
    workload, gpus, profiles = two_by_two()
    for p in profiles.values():
        p.max_rate[1, 0] = 0.0
    with pytest.raises(MelangeError, match=r"no GPU type can serve bucket \(1, 0\)"):
        solve(workload, gpus, profiles)


def test_binding_cap_is_named():
    workload, gpus, profiles = two_by_two()
    gpus = [replace(gpus[0], max_count=4), replace(gpus[1], max_count=0)]
    with pytest.raises(MelangeError, match="availability caps bind.*A100-80GB max_count=0"):
        solve(workload, gpus, profiles)


def test_cap_zero_on_only_server_is_named():
    workload, gpus, profiles = two_by_two()
    profiles["A10G"].max_rate[:] = 0.0
    gpus = [gpus[0], replace(gpus[1], max_count=0)]
    with pytest.raises(MelangeError, match="A100-80GB.*max_count is 0"):
        solve(workload, gpus, profiles)


def test_baselines_use_one_type_and_are_never_cheaper_than_the_mix():
    workload, gpus, profiles = two_by_two()
    profiles["A10G"].max_rate[1, 1] = 0.0
    best = solve(workload, gpus, profiles)
    singles = baselines(workload, gpus, profiles)
    assert singles["A10G"] is None  # cannot serve bucket (1, 1)
    assert singles["A100-80GB"].counts == {"A100-80GB": 2}
    assert all(p is None or p.cost >= best.cost - 1e-9 for p in singles.values())


def test_checker_catches_broken_plans():
    workload, gpus, profiles = two_by_two()
    plan = solve(workload, gpus, profiles, SolveOptions(slice_factor=1))
    short = replace(plan, counts={"A10G": 1, "A100-80GB": 1}, cost=4.68)
    assert any("exceeds count" in v for v in plan_violations(short, workload, gpus, profiles))
    half = replace(plan, share={g: s * 0.5 for g, s in plan.share.items()})
    assert any("sum to 0.5" in v for v in plan_violations(half, workload, gpus, profiles))
    wrong_cost = replace(plan, cost=1.0)
    assert any("does not match" in v for v in plan_violations(wrong_cost, workload, gpus, profiles))


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10**6), S=st.one_of(st.integers(1, 16), st.just("continuous")),
       headroom=st.sampled_from([0.0, 0.1, 0.5]), utilization=st.sampled_from([1.0, 0.9, 0.6]),
       cap=st.one_of(st.none(), st.integers(0, 6)), floor=st.integers(0, 2))
def test_every_plan_meets_its_own_constraints(seed, S, headroom, utilization, cap, floor):
    rng = np.random.default_rng(seed)
    workload, gpus, profiles = random_instance(rng, 4, 3, 3, float(rng.choice([1, 4, 16])))
    gpus = [replace(gpus[0], max_count=cap), replace(gpus[1], min_count=floor), gpus[2]]
    options = SolveOptions(slice_factor=S, headroom=headroom, utilization=utilization)
    try:
        plan = solve(workload, gpus, profiles, options)
    except MelangeError as exc:
        assert "infeasible" in str(exc) and cap is not None  # only a cap can make it infeasible
        return
    assert plan_violations(plan, workload, gpus, profiles, options) == []
    assert plan.bound is not None and plan.bound <= plan.cost + 1e-6
