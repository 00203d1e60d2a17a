"""Workload histograms from traces (CSV, OpenAI-style JSONL), shipped workloads, `melange scenarios`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from melange.cli import cli
from melange.core import BucketGrid, MelangeError
from melange.scenario import load_scenario
from melange.workloads import BUILTIN_WORKLOADS, build_workload, load_workload_file, read_requests

GRID = "1,100,1000/1,100,500"
ARXIV = "arxiv_summarization_stats_llama2_tokenizer_filtered_v2"


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_csv_trace_is_bucketed_by_its_token_columns(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("input_tokens,output_tokens\n10,10\n10,200\n500,10\n500,10\n5000,10\n")
    out = tmp_path / "w.yaml"
    result = run("scenarios", "build-workload", str(trace), "--grid", GRID, "-o", str(out))
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(out.read_text())
    assert doc["distribution"] == [[0.25, 0.25], [0.5, 0.0]]  # the 5000-token prompt is outside the grid
    assert doc["traces"][0]["outside_grid"] == pytest.approx(0.2) and doc["traces"][0]["requests"] == 5


def test_openai_jsonl_logs_are_read_from_any_usage_block(tmp_path):
    lines = [{"id": "a", "usage": {"prompt_tokens": 10, "completion_tokens": 10}},
             {"custom_id": "b", "response": {"status_code": 200, "body": {"usage": {"prompt_tokens": 500,
                                                                                   "completion_tokens": 200}}}},
             {"id": "c", "error": {"message": "rate limited"}},  # no usage: skipped
             {"id": "d", "usage": {"prompt_tokens": 20, "completion_tokens": 0}}]  # nothing generated
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    trace = read_requests(log)
    assert trace.input_tokens.tolist() == [10, 500] and trace.output_tokens.tolist() == [10, 200]
    dist, facts = build_workload([log], BucketGrid((1, 100, 1000), (1, 100, 500)))
    assert dist.tolist() == [[0.5, 0.0], [0.0, 0.5]] and facts["traces"][0]["requests"] == 2
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": 1}\n')
    with pytest.raises(MelangeError, match="no line has usage"):
        read_requests(bad)


def test_weights_mix_shares_of_requests_not_rows(tmp_path):
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text("input_tokens,output_tokens\n" + "10,10\n" * 9)  # 9 rows, all bucket (0, 0)
    b.write_text("input_tokens,output_tokens\n500,200\n")  # 1 row, bucket (1, 1)
    dist, _ = build_workload([a, b], BucketGrid((1, 100, 1000), (1, 100, 500)), [0.8, 0.2])
    assert dist[0, 0] == pytest.approx(0.8) and dist[1, 1] == pytest.approx(0.2)
    with pytest.raises(MelangeError, match="--weights"):
        build_workload([a, b], BucketGrid((1, 100, 1000), (1, 100, 500)), [1.0])


@pytest.mark.parametrize("name, traces, weights", [
    ("chat", ["arena_synthetic"], None), ("chat-azure", ["splitwise_conv"], None), ("code", ["splitwise_code"], None),
    ("summarization", [ARXIV], None), ("mixed", ["arena_synthetic", ARXIV], [0.8, 0.2]),
    ("mixed-azure", ["splitwise_conv", ARXIV], [0.8, 0.2])])
def test_shipped_workloads_are_what_their_traces_give(name, traces, weights):
    doc = yaml.safe_load((BUILTIN_WORKLOADS / f"{name}.yaml").read_text())
    dist, facts = build_workload(traces, BucketGrid.paper(), weights)
    assert np.asarray(doc["distribution"]) == pytest.approx(dist, abs=1e-8)
    assert doc["traces"] == facts["traces"]
    assert ("MIT" in doc["attribution"]) or ("2309.11998" in doc["attribution"])  # a licence, or the published source
    assert (BUILTIN_WORKLOADS / "README.md").read_text().count(f"{name}.yaml") >= 1


def test_mixed_is_80_percent_chat():
    chat = load_workload_file("chat", BucketGrid.paper())
    summ = load_workload_file("summarization", BucketGrid.paper())
    mixed = load_workload_file("mixed", BucketGrid.paper())
    assert mixed == pytest.approx(0.8 * chat + 0.2 * summ, abs=1e-7)


def test_a_scenario_can_reference_a_workload_file(tmp_path):
    doc = yaml.safe_load((Path(__file__).parent / "data" / "small.yaml").read_text())
    doc.pop("grid")  # the paper grid, like the shipped workloads
    doc["gpus"] = [{"name": "A10G", "cost": 1.01, "profile": [[2.0] * 6] * 10}]
    doc["workload"] = {"rate": 4, "distribution": {"file": "chat"}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    sc = load_scenario(path)
    assert sc.workload.distribution == pytest.approx(load_workload_file("chat", BucketGrid.paper()))
    doc["grid"] = {"input_edges": [1, 100, 1000], "output_edges": [1, 100, 500]}
    path.write_text(yaml.safe_dump(doc))
    result = run("solve", str(path))
    assert result.exit_code == 2 and "another bucket grid" in result.output


def test_scenarios_list_and_show():
    result = run("scenarios", "list")
    assert result.exit_code == 0 and "default" in result.output
    shown = run("scenarios", "show", "default")
    assert shown.exit_code == 0 and "slo:" in shown.output and "workload:" in shown.output
    missing = run("scenarios", "show", "nope")
    assert missing.exit_code == 2 and "built-in:" in missing.output and "default" in missing.output


def test_build_workload_bad_input_is_one_line(tmp_path):
    for args in (["nope.csv"], ["splitwise_conv", "--grid", "1,2/x"], ["splitwise_conv", "--weights", "a"]):
        result = run("scenarios", "build-workload", *args, "-o", str(tmp_path / "w.yaml"))
        assert result.exit_code == 2 and result.output.count("\n") == 1, result.output


def test_derived_traces_are_what_their_script_makes(tmp_path):
    """The Arena-like and mixed traces are regenerated byte for byte by scripts/make_traces.py,
    and the Arena-like lengths keep LMSYS-Chat-1M's published means (69.5 / 214.5 tokens) within 2 %."""
    import importlib.util

    import pandas as pd

    path = Path(__file__).parent.parent / "scripts" / "make_traces.py"
    spec = importlib.util.spec_from_file_location("make_traces", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(tmp_path)
    for name in ("arena_synthetic.csv", "arena_arxiv_mixed.csv"):
        assert (tmp_path / name).read_bytes() == (module.TRACES / name).read_bytes(), name
    arena = pd.read_csv(tmp_path / "arena_synthetic.csv")
    assert arena["input_tokens"].mean() == pytest.approx(69.5, rel=0.02)
    assert arena["output_tokens"].mean() == pytest.approx(214.5, rel=0.02)
