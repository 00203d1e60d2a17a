"""The built-in scenario behind `melange plan`: it loads, solves to a valid plan, and validates."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from melange.cli import cli
from melange.optimizer import plan_violations, solve
from melange.scenario import load_scenario


def test_default_scenario_loads_with_models_and_profiles():
    sc = load_scenario()
    names = [g.name for g in sc.gpus]
    assert names == ["L4", "A10G", "A100-80GB", "H100"]
    assert set(sc.profiles) == set(names) == set(sc.step_models)
    assert np.isclose(sc.workload.distribution.sum(), 1.0)
    assert [g.cost for g in sc.gpus] == [0.70, 1.01, 3.67, 7.516]  # the paper's prices
    # Every bucket with traffic is servable by some GPU type.
    servable = np.any([p.max_rate > 0 for p in sc.profiles.values()], axis=0)
    assert np.all(servable[sc.workload.distribution > 0])


def test_default_scenario_solves_to_a_valid_mix():
    sc = load_scenario()
    plan = solve(sc.workload, sc.gpus, sc.profiles, sc.solve)
    assert plan.status == "optimal"
    assert plan_violations(plan, sc.workload, sc.gpus, sc.profiles, sc.solve) == []


def test_melange_plan_runs_on_the_default_scenario(tmp_path):
    result = CliRunner().invoke(cli, ["plan", "--requests", "3000", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "plan.json").read_text())
    assert report["rounds"] and report["rounds"][0]["attainment"] is not None
    assert "Validation rounds" in result.output
