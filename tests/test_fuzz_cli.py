"""Random scenario mutations fed to `solve`, `simulate` and `plan` (issue 8): whatever the file
holds, the CLI never shows a traceback; it exits 0, 1 or 2, and on 2 prints one `Error:` line."""

from __future__ import annotations

import copy
import json
import math
import os

import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from melange.cli import cli

STEP = {"alpha": 0.01, "beta_prefill": 0.0002, "beta_decode": 0.0001, "beta_kv": 5e-7, "kv_capacity_tokens": 50000}
BASE = {
    "name": "fuzz",
    "grid": {"input_edges": [1, 100, 1000], "output_edges": [1, 50, 300]},
    "workload": {"rate": 4, "distribution": [[0.4, 0.2], [0.3, 0.1]], "arrival": {"process": "poisson", "cv": 1.0}},
    "slo": {"tpot_ms": 80, "ttft_ms": 2000, "attainment": 0.9, "definition": "decode"},
    "gpus": [
        {"name": "A10G", "cost": 1.0, "profile": [[2, 1], [5, 2]], "step_time": dict(STEP), "max_count": 20,
         "engine": {"max_num_seqs": 64}},
        {"name": "A100", "cost": 3.7, "profile": [[8, 4], [20, 8]], "step_time": dict(STEP, alpha=0.005)},
    ],
    "solver": {"slice_factor": 4, "headroom": 0.0, "utilization": 1.0},
    "simulation": {"requests": 60, "warmup_s": 0, "seed": 1},
}
EXAMPLES = int(os.environ.get("MELANGE_FUZZ_EXAMPLES", "100"))  # raise it for a longer hunt
PLAN = {"counts": {"A10G": 2, "A100": 1}, "share": {"A10G": [[1, 1], [1, 0]], "A100": [[0, 0], [0, 1]]}, "cost": 5.7}
ABSURD = [0, -1, 1, 1.5, 1e300, -1e300, 1e-300, 1e-20, 10**20, math.nan, math.inf, True, False, None, "16", "abc",
          "", "10%", "2s", [], {}, [[1]], [1, 2], [[0, 0], [0, 0]], [[1e300, 1], [1, 1]], [[1e-20, 1], [1, 1]],
          {"trace": "nope"}]


def paths(node, prefix=()):
    """Every key path in a nested dict/list."""
    yield prefix
    if isinstance(node, dict):
        for k, v in node.items():
            yield from paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from paths(v, (*prefix, i))


def mutate(doc, path, op, value):
    """Drop, replace or re-shape the value at `path` (the root itself is replaced wholesale)."""
    if not path:
        return value if op == "set" else [doc]
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if op == "drop":
        del parent[key]
    elif op == "set":
        parent[key] = value
    elif op == "wrap":
        parent[key] = [parent[key]]
    elif op == "unwrap" and isinstance(parent[key], list) and parent[key]:
        parent[key] = parent[key][0]
    elif op == "rename" and isinstance(parent, dict):
        parent[f"{key}_x"] = parent.pop(key)
    return doc


@st.composite
def scenarios(draw):
    doc = copy.deepcopy(BASE)
    for _ in range(draw(st.integers(1, 3))):
        all_paths = list(paths(doc))
        path = draw(st.sampled_from(all_paths))
        op = draw(st.sampled_from(["drop", "set", "set", "set", "wrap", "unwrap", "rename"]))
        value = copy.deepcopy(draw(st.sampled_from(ABSURD)))
        try:
            doc = mutate(doc, path, op, value)
        except (KeyError, IndexError, TypeError):
            continue
    return doc


def check(result) -> None:
    """No traceback; exit 0, 1 or 2; on 2 exactly one `Error:` line."""
    assert result.exception is None or isinstance(result.exception, SystemExit), (
        f"{type(result.exception).__name__}: {result.exception}\n{result.output}")
    assert result.exit_code in (0, 1, 2), result.output
    if result.exit_code == 2:
        errors = [ln for ln in result.output.splitlines() if ln.startswith("Error:")]
        assert len(errors) == 1, result.output


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(doc=scenarios(), fmt=st.sampled_from(["yaml", "json"]))
def test_mutated_scenarios_never_crash_the_cli(tmp_path, doc, fmt):
    scenario = tmp_path / f"s.{fmt}"
    scenario.write_text(json.dumps(doc) if fmt == "json" else yaml.safe_dump(doc))
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(PLAN))
    runner = CliRunner()
    check(runner.invoke(cli, ["solve", str(scenario), "--time-limit", "5s"]))
    check(runner.invoke(cli, ["simulate", str(scenario), "--plan", str(plan), "--requests", "60"]))
    check(runner.invoke(cli, ["plan", str(scenario), "--rounds", "1", "--requests", "60", "--time-limit", "5s"]))


@settings(max_examples=EXAMPLES // 2 + 5, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(list(paths(PLAN))), op=st.sampled_from(["drop", "set", "wrap", "rename"]),
       value=st.sampled_from(ABSURD))
def test_mutated_plans_never_crash_simulate(tmp_path, path, op, value):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump(BASE))
    plan = tmp_path / "plan.json"
    try:
        doc = mutate(copy.deepcopy(PLAN), path, op, copy.deepcopy(value))
    except (KeyError, IndexError, TypeError):
        doc = PLAN
    plan.write_text(json.dumps(doc))
    check(CliRunner().invoke(cli, ["simulate", str(scenario), "--plan", str(plan), "--requests", "60"]))
