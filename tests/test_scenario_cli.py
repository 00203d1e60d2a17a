"""`melange solve` end to end, the seed's format, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from melange.cli import cli
from melange.scenario import load_scenario

DATA = Path(__file__).parent / "data"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_seed_example_writes_the_seed_result_shape(tmp_path):
    out = tmp_path / "out.json"
    result = run("solve", str(DATA / "seed_example.json"), "--format", "seed", "-o", str(out))
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == {"A10G": 3, "A100-80GB": 1, "cost": 6.7}


def test_our_format_with_a_profile_file_gives_the_same_plan(tmp_path):
    out = tmp_path / "plan.json"
    result = run("solve", str(DATA / "small.yaml"), "-o", str(out), "--baselines")
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    assert plan["counts"] == {"A10G": 3, "A100-80GB": 1}
    assert plan["status"] == "optimal" and plan["gap"] == 0.0 and plan["bound"] == pytest.approx(6.7)
    # Two splits cost $6.70/h (A10G on in 1-100/out 1-100, or on in 100-1000/out 1-100): a tie.
    assert plan["share"]["A10G"] in ([[1.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [1.0, 0.0]])
    assert plan["baselines"] == {"A10G": pytest.approx(12.12), "A100-80GB": pytest.approx(7.34)}
    assert "Single-type baselines" in result.output and "45%" in result.output


def test_flags_override_the_scenario(tmp_path):
    out = tmp_path / "plan.json"
    result = run("solve", str(DATA / "small.yaml"), "--headroom", "100%", "--slice-factor", "continuous",
                 "-o", str(out))
    assert result.exit_code == 0, result.output
    plan = json.loads(out.read_text())
    assert plan["slice_factor"] == "continuous" and plan["cost"] > 6.7


def test_trace_histogram_distribution(tmp_path):
    sc = load_scenario(write_variant(tmp_path, _set("workload.distribution", {"trace": "splitwise_conv"})))
    assert sc.workload.distribution.sum() == pytest.approx(1.0)
    # conv inputs are mostly 100-1000 tokens and outputs under 500.
    assert sc.workload.distribution[1].sum() > 0.5


def write_variant(tmp_path, edit) -> str:
    doc = yaml.safe_load((DATA / "small.yaml").read_text())
    edit(doc)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(doc))
    (tmp_path / "a100_profile.yaml").write_text((DATA / "a100_profile.yaml").read_text())
    return str(path)


def _set(path: str, value):
    def edit(doc):
        node = doc
        keys = path.split(".")
        for k in keys[:-1]:
            node = node[int(k)] if k.isdigit() else node[k]
        last = keys[-1]
        node[int(last) if last.isdigit() else last] = value
    return edit


BAD = [
    ("unknown key", _set("workload.ratee", 3), "workload.ratee: unknown key"),
    ("negative cost", _set("gpus.0.cost", -1.0), "gpus[0].cost: must be greater than 0"),
    ("nan rate", _set("workload.rate", float("nan")), "workload.rate: must be a finite number"),
    ("inf cost", _set("gpus.1.cost", float("inf")), "gpus[1].cost: must be a finite number"),
    ("zero rate", _set("workload.rate", 0), "workload.rate: must be greater than 0"),
    ("negative profile", _set("gpus.0.profile", [[2, -1], [5, 2]]), "gpus[0].profile[0][1]: must be greater than or equal to 0"),
    ("bad sum", _set("workload.distribution", [[0.2, 0.1], [0.5, 0.1]]), "workload.distribution: shares sum to 0.9, not 1 (use --normalize"),
    ("shape", _set("workload.distribution", [[0.5, 0.5]]), "workload.distribution: table must be 2x2 to match the grid, got 1x2"),
    ("profile shape", _set("gpus.0.profile", [[2, 1, 3], [5, 2, 3]]), "gpus[A10G].profile: table must be 2x2"),
    ("empty gpus", _set("gpus", []), "gpus: List should have at least 1 item"),
    ("missing rate", lambda d: d["workload"].pop("rate"), "workload.rate: required key missing"),
    ("bad slice", _set("solver.slice_factor", 0), "solver.slice_factor"),
    ("dup gpu", _set("gpus.1.name", "A10G"), "gpus: duplicate GPU name 'A10G'"),
    ("cap below min", lambda d: d["gpus"][0].update(max_count=1, min_count=2), "gpus[A10G].max_count: 1 is below min_count 2"),
    ("missing profile file", _set("gpus.1.profile", "nope.yaml"), "gpus[A100-80GB].profile: file nope.yaml not found"),
]


@pytest.mark.parametrize("case,edit,message", BAD, ids=[b[0] for b in BAD])
def test_bad_scenario_is_one_line_exit_2(tmp_path, case, edit, message):
    result = run("solve", write_variant(tmp_path, edit))
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: bad.yaml: "), result.output
    assert message in lines[0], lines[0]


def test_normalize_rescales_instead_of_failing(tmp_path):
    path = write_variant(tmp_path, _set("workload.distribution", [[0.4, 0.2], [1.0, 0.4]]))
    result = run("solve", path, "--normalize", "--format", "seed", "-o", str(tmp_path / "o.json"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "o.json").read_text()) == {"A10G": 3, "A100-80GB": 1, "cost": 6.7}


@pytest.mark.parametrize("content,suffix,message", [
    ("gpu_info: [unclosed", ".yaml", "not valid YAML"),
    ("{\"gpu_info\": ", ".json", "not valid JSON"),
    ("- just\n- a list\n", ".yaml", "expected a mapping"),
])
def test_unparseable_file(tmp_path, content, suffix, message):
    path = tmp_path / f"x{suffix}"
    path.write_text(content)
    result = run("solve", str(path))
    assert result.exit_code == 2 and message in result.output and len(result.output.strip().splitlines()) == 1


def test_missing_file():
    result = run("solve", "/no/such/file.yaml")
    assert result.exit_code == 2 and "file not found" in result.output


def test_seed_format_bad_input(tmp_path):
    doc = json.loads((DATA / "seed_example.json").read_text())
    doc["gpu_info"]["A10G"]["tputs"] = [[2, 1]]
    path = tmp_path / "seed.json"
    path.write_text(json.dumps(doc))
    result = run("solve", str(path))
    assert result.exit_code == 2
    assert "gpu_info.A10G.tputs: table must be 2x2" in result.output


def test_bad_flags_are_one_line_exit_2():
    for args, message in [(["--slice-factor", "0"], "--slice-factor"), (["--headroom", "lots"], "--headroom"),
                          (["--utilization", "150%"], "--utilization")]:
        result = run("solve", str(DATA / "small.yaml"), *args)
        assert result.exit_code == 2 and message in result.output, result.output


def test_infeasible_names_the_cap(tmp_path):
    path = write_variant(tmp_path, lambda d: (d["gpus"][0].update(max_count=2), d["gpus"][1].update(max_count=0)))
    result = run("solve", path)
    assert result.exit_code == 2 and "availability caps bind" in result.output
