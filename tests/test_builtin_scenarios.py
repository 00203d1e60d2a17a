"""Built-in scenarios: each loads with its committed profiles, says what it is, and plans that hold."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from melange.core import BucketGrid
from melange.scenario import BUILTIN_SCENARIOS, load_scenario
from melange.workloads import build_workload

BUILTINS = sorted(p.stem for p in BUILTIN_SCENARIOS.glob("*.yaml"))
PAPER = [n for n in BUILTINS if n not in ("default", "servegen-day")]
ARXIV = "arxiv_summarization_stats_llama2_tokenizer_filtered_v2"
GRID_4K = BucketGrid((1, 25, 100, 250, 500, 1000, 2000, 4000), (1, 25, 100, 250, 500, 1000))
REQUESTS = 1000  # shortened runs (the scenarios' own: 10,000)


def test_the_paper_scenarios_are_all_there():
    for workload in ("chat", "summarization", "mixed"):
        for tpot in (40, 120):
            assert f"{workload}-{tpot}ms" in BUILTINS
    assert "chat-120ms-today" in BUILTINS


@pytest.mark.parametrize("name", PAPER)
def test_builtin_scenario_loads_and_describes_itself(name):
    sc = load_scenario(BUILTIN_SCENARIOS / f"{name}.yaml")  # profile metadata must match: no --force
    doc = yaml.safe_load((BUILTIN_SCENARIOS / f"{name}.yaml").read_text())
    assert "TPOT" in doc["description"] and "mean" in doc["description"]  # says which rule it uses
    assert {g.name: g.cost for g in sc.gpus} == {"L4": 0.70, "A10G": 1.01, "A100-80GB": 3.67, "H100": 7.516}
    assert (doc.get("engine_preset") == "vllm-0.2") == (not name.endswith("-today"))
    busy = sc.workload.bucket_rates() > 0
    served = np.any([p.max_rate > 0 for p in sc.profiles.values()], axis=0)
    assert not np.any(busy & ~served), "a bucket with traffic that no GPU type can serve"


@pytest.mark.parametrize("name, traces, weights", [
    ("chat-4k", ["arena_synthetic"], None), ("chat-azure-4k", ["splitwise_conv"], None),
    ("summarization-4k", [ARXIV], None), ("mixed-4k", ["arena_synthetic", ARXIV], [0.8, 0.2]),
    ("mixed-azure-4k", ["splitwise_conv", ARXIV], [0.8, 0.2])])
def test_4k_workloads_are_what_their_traces_give(name, traces, weights):
    doc = yaml.safe_load((BUILTIN_SCENARIOS / "workloads" / f"{name}.yaml").read_text())
    dist, facts = build_workload(traces, GRID_4K, weights)
    assert np.asarray(doc["distribution"]) == pytest.approx(dist, abs=1e-8)
    assert doc["traces"] == facts["traces"]


def _holds(name: str) -> None:
    """The answer holds, on the holdout seeds (never used by the search), and again on a fresh seed."""
    from melange.validate import plan_cheapest, run_check, run_settings

    sc = load_scenario(BUILTIN_SCENARIOS / f"{name}.yaml")
    report = plan_cheapest(sc, requests=REQUESTS)
    assert report.best is not None, f"{name}: no plan held"
    assert report.validation.seeds == [3, 4] and report.holdout[-1]["held"]
    check = run_check(sc, report.best, 901, run_settings(sc, requests=REQUESTS))
    assert check.verdict.stable and check.verdict.attainment >= sc.slo.attainment - 0.01, check.verdict


def test_plan_holds_on_one_builtin_scenario():
    _holds("chat-120ms")


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in PAPER if n != "chat-120ms"])
def test_plan_holds_on_every_builtin_scenario(name):
    _holds(name)


def test_profiles_readme_names_every_profile_file():
    folder = Path(BUILTIN_SCENARIOS) / "profiles" / "llama-2-7b"
    used = {Path(g["profile"]).name for n in PAPER
            for g in yaml.safe_load((BUILTIN_SCENARIOS / f"{n}.yaml").read_text())["gpus"]}
    assert used <= {p.name for p in folder.glob("*.yaml")}


def test_servegen_day_scenario_resolves_its_schedule():
    from melange.schedule import resolve

    sc = load_scenario(BUILTIN_SCENARIOS / "servegen-day.yaml")
    job = resolve(sc)
    assert (job.first, job.count, job.period, job.history) == (1008, 144, 144, 7)
    assert job.span.windows == 144 and 10 < job.span.mean_rate < 40  # a tenth of ServeGen's rate
    assert job.first >= job.history * job.period  # a week of history before the day
    assert all(g.name in sc.step_models and g.startup_s == 300.0 for g in sc.gpus)
