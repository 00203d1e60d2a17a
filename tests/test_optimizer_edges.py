"""Exact capacity at knife edges, numerically absurd inputs, options that mean what they say,
loud non-optimality, and solve_many (issues 8 and 11)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melange.cli import cli
from melange.core import BucketGrid, GpuType, MelangeError, Plan, Profile, SolveOptions, Workload
from melange.optimizer import plan_violations, solve, solve_many
from melange.optimizer.instances import random_instance

DATA = Path(__file__).parent / "data"


def one_bucket(rate: float, caps: dict[str, float], costs: dict[str, float] | None = None, **gpu_fields):
    """One bucket at `rate` req/s; one GPU type per entry of caps (max req/s per instance)."""
    grid = BucketGrid((1, 2), (1, 2), indexed=True)
    costs = costs or {name: 1.0 for name in caps}
    gpus = [GpuType(name, costs[name], **gpu_fields.get(name, {})) for name in caps]
    profiles = {name: Profile(name, np.array([[cap]])) for name, cap in caps.items()}
    return Workload(grid, np.array([[1.0]]), rate), gpus, profiles


def exact_overloads(plan: Plan, workload: Workload, gpus, profiles, options: SolveOptions) -> list[str]:
    """Types whose load, in fractions, tops their count (independent of optimizer/check.py)."""
    rates = workload.bucket_rates() * (1.0 + options.headroom)
    S = None if options.slice_factor == "continuous" else int(options.slice_factor)
    over = []
    for g in gpus:
        ceiling = options.utilization if options.utilization_override or g.utilization is None else g.utilization
        load = Fraction(0)
        for i, j in np.argwhere(rates > 0):
            share = plan.share[g.name][i, j]
            if share > 0:
                part = Fraction(round(share * S), S) if S else Fraction(float(share))
                load += Fraction(float(rates[i, j])) * part / Fraction(float(profiles[g.name].max_rate[i, j] * ceiling))
        if load > plan.counts[g.name] * (1 if S else 1 + Fraction(1e-12)):  # continuous: floats
            over.append(f"{g.name}: {float(load)!r} > {plan.counts[g.name]}")
    return over


KNIFE = st.builds(lambda n, k, sign: n + sign * 10.0 ** -k, st.integers(1, 20), st.integers(5, 9),
                  st.sampled_from([-1, 1]))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rate=KNIFE, S=st.sampled_from([1, 2, 3, 8, 32]))
def test_knife_edge_rate_gets_the_exact_count(rate, S):
    workload, gpus, profiles = one_bucket(rate, {"a": 1.0})
    options = SolveOptions(slice_factor=S)
    plan = solve(workload, gpus, profiles, options)
    assert plan.counts["a"] == math.ceil(Fraction(rate))  # the mathematically right count
    assert plan.status == "optimal"
    assert exact_overloads(plan, workload, gpus, profiles, options) == []


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), k=st.integers(5, 9), sign=st.sampled_from([-1, 1]),
       S=st.sampled_from([1, 4, 8, "continuous"]))
def test_knife_edge_loads_on_mixed_instances_fit_exactly(seed, k, sign, S):
    # Scale the rate so the cheapest single-type load sits just beside an integer.
    rng = np.random.default_rng(seed)
    workload, gpus, profiles = random_instance(rng, 2, 2, 3, 4.0, zero_share=0.0, empty_share=0.0)
    load = float(np.sum(workload.bucket_rates() / profiles["gpu0"].max_rate))
    target = max(1, round(load)) + sign * 10.0 ** -k
    workload = replace(workload, rate=workload.rate * target / load)
    options = SolveOptions(slice_factor=S)
    plan = solve(workload, gpus, profiles, options)
    assert exact_overloads(plan, workload, gpus, profiles, options) == []
    assert plan_violations(plan, workload, gpus, profiles, options) == []


@pytest.mark.parametrize("rate,count", [(2.000001, 3), (3.000001, 4), (16.000001, 17), (2.0000001, 3),
                                        (2 + 1e-9, 3), (2 - 1e-9, 2), (1e-5, 1)])
def test_issue_8_knife_edges_and_tiny_rates(rate, count):
    # Before: 2.000001 -> "Unknown error in call to HiGHS"; 2.0000001 -> 2; 1e-5 -> 0 instances at $0.
    workload, gpus, profiles = one_bucket(rate, {"a": 1.0})
    plan = solve(workload, gpus, profiles, SolveOptions(slice_factor=8))
    assert plan.counts == {"a": count} and plan.cost == count and plan.status == "optimal"


def test_tiny_rate_picks_the_cheapest_single_instance():
    workload, gpus, profiles = one_bucket(1e-5, {"cheap": 1.0, "dear": 50.0}, {"cheap": 1.0, "dear": 3.0})
    plan = solve(workload, gpus, profiles, SolveOptions(slice_factor=4))
    assert plan.counts == {"cheap": 1, "dear": 0} and plan.status == "optimal"


def test_huge_slice_factor_is_refused_naming_the_option():
    # Before: slice factor 1e6 routed traffic to a type with 0 instances and called it optimal.
    workload, gpus, profiles = random_instance(np.random.default_rng(3), 3, 2, 3, 4.0)
    with pytest.raises(MelangeError, match=r"solver\.slice_factor \(--slice-factor\)"):
        solve(workload, gpus, profiles, SolveOptions(slice_factor=1_000_000))
    result = CliRunner().invoke(cli, ["solve", str(DATA / "small.yaml"), "--slice-factor", "1000000"])
    assert result.exit_code == 2 and "--slice-factor" in result.output and "Traceback" not in result.output


def test_largest_allowed_slice_factor_keeps_its_constraints():
    workload, gpus, profiles = random_instance(np.random.default_rng(5), 2, 2, 3, 2.0)
    options = SolveOptions(slice_factor=4096)
    plan = solve(workload, gpus, profiles, options)
    assert plan_violations(plan, workload, gpus, profiles, options) == []
    assert all(plan.counts[g] > 0 for g, s in plan.share.items() if np.any(s > 0))


@pytest.mark.parametrize("cell", [1e-20, 1e-9, 5e-7])
def test_meaningless_profile_cells_mean_cannot_serve(cell):
    # Before: cells of 1e-20 -> "Unknown error in call to HiGHS" (traceback).
    workload, gpus, profiles = one_bucket(3.0, {"a": cell, "b": 2.0})
    plan = solve(workload, gpus, profiles, SolveOptions(slice_factor=4))
    assert plan.counts == {"a": 0, "b": 2} and plan.share["a"][0, 0] == 0
    workload, gpus, profiles = one_bucket(3.0, {"a": cell})
    with pytest.raises(MelangeError, match="no GPU type can serve"):
        solve(workload, gpus, profiles)


def test_huge_cells_and_tiny_bucket_rates_still_need_an_instance():
    grid = BucketGrid((1, 2, 3), (1, 2), indexed=True)
    workload = Workload(grid, np.array([[1 - 1e-15], [1e-15]]), 1.0)
    gpus = [GpuType("a", 1.0), GpuType("b", 2.0)]
    profiles = {"a": Profile("a", np.array([[1e20], [0.0]])), "b": Profile("b", np.array([[0.0], [1e20]]))}
    options = SolveOptions(slice_factor=8)
    plan = solve(workload, gpus, profiles, options)
    assert plan.counts == {"a": 1, "b": 1} and plan_violations(plan, workload, gpus, profiles, options) == []


def test_absurd_rate_is_one_line_naming_the_rate():
    workload, gpus, profiles = one_bucket(1e12, {"a": 1.0})
    with pytest.raises(MelangeError, match="workload.rate"):
        solve(workload, gpus, profiles)


def test_checker_catches_an_overshoot_of_any_size():
    # Before: optimizer/check.py accepted loads up to 1e-6 above the count.
    workload, gpus, profiles = one_bucket(2.0 + 1e-12, {"a": 1.0})
    plan = Plan({"a": 2}, {"a": np.array([[1.0]])}, 2.0)
    assert any("exceeds count 2" in v for v in plan_violations(plan, workload, gpus, profiles, SolveOptions(slice_factor=1)))
    exact = replace(workload, rate=2.0)
    assert plan_violations(plan, exact, gpus, profiles, SolveOptions(slice_factor=1)) == []


def test_larger_slice_factor_that_resolves_infeasibility_is_named():
    # Before: "availability caps bind", although slice factor 2 solves it.
    workload, gpus, profiles = one_bucket(2.0, {"a": 1.5, "b": 1.5}, a={"max_count": 1}, b={"max_count": 1})
    with pytest.raises(MelangeError, match=r"slice_factor=1 .*slice factor 2 finds a plan"):
        solve(workload, gpus, profiles, SolveOptions(slice_factor=1))
    assert solve(workload, gpus, profiles, SolveOptions(slice_factor=2)).counts == {"a": 1, "b": 1}


def test_command_line_utilization_overrides_the_per_type_one(tmp_path):
    spec = yaml.safe_load((DATA / "small.yaml").read_text())
    spec["gpus"][0]["utilization"] = 0.1  # A10G nearly useless at 10 %
    spec["gpus"][1]["profile"] = str(DATA / "a100_profile.yaml")
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(spec))
    runs = {}
    for flag in ([], ["--utilization", "100%"]):
        out = tmp_path / f"plan{len(flag)}.json"
        result = CliRunner().invoke(cli, ["solve", str(path), *flag, "-o", str(out)])
        assert result.exit_code == 0, result.output
        runs[len(flag)] = json.loads(out.read_text())["counts"]
    assert runs[0]["A10G"] == 0 and runs[2] == {"A10G": 3, "A100-80GB": 1}  # the seed's optimum at 100 %


def test_a_plan_not_proven_optimal_is_loud_everywhere(tmp_path, monkeypatch):
    import melange.optimizer as optimizer  # `melange solve` imports its solver lazily, from here

    def time_limited(*args, **kwargs):
        plan = solve(*args, **kwargs)
        return replace(plan, status="feasible", bound=plan.cost * 0.9, gap=0.1)

    monkeypatch.setattr(optimizer, "solve", time_limited)
    out = tmp_path / "seed.json"
    result = CliRunner().invoke(cli, ["solve", str(DATA / "seed_example.json"), "--format", "seed", "-o", str(out)])
    assert result.exit_code == 1, result.output
    assert "NOT PROVEN OPTIMAL" in result.output and "10.00%" in result.output
    assert json.loads(out.read_text())["status"] == "feasible" and json.loads(out.read_text())["gap"] == 0.1


def test_solve_many_matches_one_solve_per_point():
    workload, gpus, profiles = random_instance(np.random.default_rng(11), 4, 3, 4, 8.0)
    rates, factors = [2.0, 8.0, 32.0], [1, 2, 4, 8, "continuous"]
    options = SolveOptions(slice_factor=8)
    plans = solve_many(workload, gpus, profiles, rates, factors, options)
    assert len(plans) == len(rates) * len(factors)
    for k, plan in enumerate(plans):
        rate, S = rates[k // len(factors)], factors[k % len(factors)]
        point = replace(options, slice_factor=S)
        alone = solve(replace(workload, rate=rate), gpus, profiles, point)
        assert plan.slice_factor == S and plan.status == "optimal"
        assert math.isclose(plan.cost, alone.cost, abs_tol=1e-9), (rate, S)
        assert plan_violations(plan, replace(workload, rate=rate), gpus, profiles, point) == []


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), rate=st.sampled_from([1, 4, 16, 64]))
def test_cost_never_rises_along_doubling_slice_factors(seed, rate):
    workload, gpus, profiles = random_instance(np.random.default_rng(seed), 3, 3, 4, float(rate))
    plans = solve_many(workload, gpus, profiles, [float(rate)], ["continuous", 1, 2, 4, 8, 16, 32])
    costs = [p.cost for p in plans]
    assert all(costs[0] <= c + 1e-9 for c in costs[1:])  # continuous bounds every slice factor
    assert all(b <= a + 1e-9 for a, b in zip(costs[1:], costs[2:])), costs


def test_tiny_rate_on_the_built_in_scenario_needs_an_instance():
    # Before: rate 1e-5 over the paper grid gave 0 instances at $0, "optimal".
    from melange.scenario import load_scenario

    sc = load_scenario(None)
    workload = replace(sc.workload, rate=1e-5)
    plan = solve(workload, sc.gpus, sc.profiles, sc.solve)
    assert sum(plan.counts.values()) >= 1 and plan.cost > 0 and plan.status == "optimal"
    assert plan_violations(plan, workload, sc.gpus, sc.profiles, sc.solve) == []
