"""`melange profile --url` against a server unlike ours, `--from-results`, and bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from melange.cli import cli
from melange.scenario import load_scenario
from tests.profiler_servers import ServerThread, other_server_app


def _grid(tmp_path, inp=(8, 16), out=(4, 8)):
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump({"input_edges": list(inp), "output_edges": list(out)}))
    return str(path)


def test_profile_url_against_another_openai_compatible_server(tmp_path):
    # Chat only, no /tokenize, usage only with the last chunk, eight requests at a time.
    out = tmp_path / "p.yaml"
    with ServerThread(lambda: other_server_app(slots=8, token_s=0.002)) as url:
        res = CliRunner().invoke(cli, [
            "profile", "--url", url, "--api", "chat", "--model", "llama-2-7b", "--served-model-name", "other-model",
            "--gpu", "A10G", "--slo-tpot", "120ms", "--attainment", "0.9", "--grid", _grid(tmp_path),
            "--time-scale", "10", "--rel-tol", "0.5", "--min-window", "5s", "--confirm-requests", "300", "--quiet",
            "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "warning: --prompt text: the server has no /tokenize" in res.output  # issue 17.6: said, not silent
    doc = yaml.safe_load(out.read_text())
    rate = doc["max_rate"][0][0]
    # Eight slots, >= 4 tokens of >= 2 ms: at most 1000 req/s of wall time, 100 in GPU seconds.
    assert 0 < rate < 100
    assert doc["source"] == "measured" and doc["measured"]["api"] == "chat"
    log = [json.loads(x) for x in (tmp_path / "p.jsonl").read_text().splitlines()]
    records = [x for x in log if x["type"] == "record"]
    assert records and all(x["error"] is None for x in records)
    assert all(len(x["itl_s"]) == x["output_tokens"] - 1 for x in records)
    confirms = [x for x in log if x["type"] == "point" and x["rate"].endswith("confirm")]
    # The log keeps 6 significant digits, the profile 4 decimals: compare at the coarser of the two.
    assert confirms and confirms[-1]["passed"] and float(confirms[-1]["rate"].split()[0]) == pytest.approx(rate, abs=1e-4)
    assert confirms[-1]["requests"] >= 300  # on fresh traffic, at least --confirm-requests


def _vllm_result(rate: float, n: int, ttft: float, gap: float, out: int = 12, inp: int = 40) -> dict:
    return {"request_rate": rate, "duration": n / rate, "completed": n, "input_lens": [inp] * n,
            "output_lens": [out] * n, "ttfts": [ttft] * n, "itls": [[gap] * (out - 1)] * n, "errors": [""] * n}


def test_from_results_vllm_bench_and_guidellm(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "r4.json").write_text(json.dumps(_vllm_result(4.0, 300, 0.05, 0.03)))
    (results / "r8.json").write_text(json.dumps(_vllm_result(8.0, 300, 0.05, 0.05)))
    (results / "r16.json").write_text(json.dumps(_vllm_result(16.0, 300, 0.5, 0.2)))  # misses 100 ms
    # GuideLLM: one poisson benchmark at 3 req/s in bucket (1, 1), 5 % errored.
    reqs = [{"prompt_tokens": 200, "output_tokens": 40, "start_time": 1000 + k / 3,
             "first_token_time": 1000 + k / 3 + 0.1, "last_token_time": 1000 + k / 3 + 2.0,
             "end_time": 1000 + k / 3 + 2.0} for k in range(300)]
    bench = {"args": {"strategy": {"type_": "poisson", "rate": 3.0}},
             "requests": {"successful": reqs, "errored": [{**reqs[0], "error": "boom"}] * 5, "incomplete": []}}
    (results / "guidellm.json").write_text(json.dumps({"benchmarks": [bench, {"args": {"strategy": {
        "type_": "synchronous"}}, "requests": {}}]}))
    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(cli, ["profile", "--from-results", str(results), "--gpu", "A10G", "--model", "llama-2-7b",
                                   "--slo-tpot", "100ms", "--attainment", "0.9", "--grid",
                                   _grid(tmp_path, (1, 100, 400), (1, 20, 50)), "--cost", "1.01", "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(out.read_text())
    assert np.allclose(doc["max_rate"], [[8.0, 0], [0, 3.0]])
    assert doc["cost"] == 1.01 and doc["step_model"]["samples"] > 0
    # The profile is what scenarios read.
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({
        "model": "llama-2-7b", "slo": {"tpot_ms": 100, "attainment": 0.9},
        "grid": {"input_edges": [1, 100, 400], "output_edges": [1, 20, 50]},
        "workload": {"rate": 1.0, "distribution": [[0, 0.5], [0, 0.5]]},
        "gpus": [{"name": "A10G", "cost": 1.01, "profile": "p.yaml"}]}))
    loaded = load_scenario(str(scenario))
    assert loaded.profiles["A10G"].source == "measured"


@pytest.mark.parametrize("args, field", [
    (["--url", "http://127.0.0.1:9", "--simulate"], "exactly one of"),
    (["--url", "http://127.0.0.1:9", "--buckets", "9,9"], "--buckets"),
    (["--url", "http://127.0.0.1:9", "--time-scale", "0"], "--time-scale"),
    (["--url", "http://127.0.0.1:9", "--confirm-requests", "0"], "--confirm-requests"),
    (["--url", "http://127.0.0.1:9", "--min-window", "-5s"], "--min-window"),
    (["--url", "http://127.0.0.1:9", "--min-window", "5"], "--min-window"),
    (["--from-results", "pyproject.toml"], "--from-results"),
])
def test_bad_input_is_one_line_exit_2(args, field, tmp_path):
    res = CliRunner().invoke(cli, ["profile", "--gpu", "A10G", "--model", "llama-2-7b", "--slo-tpot", "100ms",
                                   *args, "-o", str(tmp_path / "p.yaml")])
    assert res.exit_code == 2 and field in res.output and "Traceback" not in res.output


def test_serve_starts_the_server_waits_for_health_and_stops_it():
    import socket
    import sys
    import urllib.request

    from melange.core import MelangeError
    from melange.profiler.launcher import ServerProcess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    tiny = ("import http.server as h; h.HTTPServer(('127.0.0.1', %d), type('H', (h.BaseHTTPRequestHandler,), "
            "{'do_GET': lambda s: (s.send_response(200), s.end_headers())})).serve_forever()" % port)
    with ServerProcess(f'{sys.executable} -c "{tiny}"', url) as server:
        assert urllib.request.urlopen(url + "/health", timeout=5).status == 200
    assert server.proc.poll() is not None  # stopped on leaving the block
    with pytest.raises(MelangeError, match="exited with code"):
        with ServerProcess(f"{sys.executable} -c 'raise SystemExit(3)'", url):
            pass


def _closed_port_args(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, url = tmp_path / "p.yaml", f"http://127.0.0.1:{port}"
    return port, url, out, ["profile", "--url", url, "--gpu", "A10G", "--model", "llama-2-7b", "--slo-tpot", "120ms",
                            "--attainment", "0.9", "--grid", _grid(tmp_path), "--time-scale", "10", "--rel-tol", "0.5",
                            "--min-window", "5s", "--confirm-requests", "300", "--quiet", "-o", str(out)]


def test_a_closed_port_fails_fast_with_the_reason(tmp_path):
    """Issue 17.5: against a closed port the run wrote "0/60 buckets served" with exit 0."""
    import time as clock

    _, url, out, args = _closed_port_args(tmp_path)
    start = clock.perf_counter()
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 2 and clock.perf_counter() - start < 10 and url in res.output, res.output
    assert "Traceback" not in res.output and not out.exists()


@pytest.mark.slow
def test_after_a_closed_port_the_same_command_measures_once_the_server_is_up(tmp_path):
    """Issue 17.5: failed probes were cached, so a re-run after the server came up measured nothing."""
    from melange.profiler.emulator import EmulatorConfig, EmulatorThread

    port, _, out, args = _closed_port_args(tmp_path)
    assert CliRunner().invoke(cli, args).exit_code == 2
    with EmulatorThread(EmulatorConfig(port=port, fixed_ttft_s=0.005, fixed_itl_s=0.002, speedup=10.0)):
        res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(out.read_text())
    assert doc["measured"]["points"] > 0 and doc["max_rate"][0][0] > 0


def test_buckets_left_out_are_marked_unmeasured_not_unservable(tmp_path):
    """Issue 17.7: buckets not profiled (--buckets) were written as 0 ("cannot serve") with
    zero_buckets: {}; a scenario using the file must not read them as unservable."""
    from melange.profiler.run import RunResult, profile_yaml_doc
    from melange.core import BucketGrid, Profile, Slo

    grid = BucketGrid((1, 100, 400), (1, 20, 50))
    result = RunResult(Profile("A10G", np.array([[0.0, 0.0], [0.0, 3.0]]), source="measured"))
    result.reasons.update({(0, 0): "not measured (--buckets left it out)", (0, 1): "not measured (--buckets left it out)",
                           (1, 0): "not measured (--buckets left it out)"})
    doc = profile_yaml_doc(result, "llama-2-7b", Slo(120), grid)
    assert doc["measured"]["unmeasured"] == [[0, 0], [0, 1], [1, 0]] and doc["measured"]["zero_buckets"] == {}
    profile = tmp_path / "prof.yaml"
    profile.write_text(yaml.safe_dump(doc))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(yaml.safe_dump({"model": "llama-2-7b", "grid": {"input_edges": [1, 100, 400],
                                                                       "output_edges": [1, 20, 50]},
                                        "workload": {"rate": 2, "distribution": [[0.5, 0.0], [0.0, 0.5]]},
                                        "slo": {"tpot_ms": 120},
                                        "gpus": [{"name": "A10G", "cost": 1.01, "profile": str(profile)}]}))
    res = CliRunner().invoke(cli, ["solve", str(scenario)])
    assert res.exit_code == 2 and "was not measured" in res.output and "in 1-100 / out 1-20" in res.output


def _import(tmp_path, files: dict, grid=((1, 100, 400), (1, 20, 50))):
    results = tmp_path / "results"
    results.mkdir(exist_ok=True)
    for name, text in files.items():
        (results / name).write_text(text)
    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(cli, ["profile", "--from-results", str(results), "--gpu", "A10G", "--model", "llama-2-7b",
                                   "--slo-tpot", "100ms", "--attainment", "0.9", "--grid", _grid(tmp_path, *grid),
                                   "-o", str(out)])
    return res, (yaml.safe_load(out.read_text()) if out.exists() else None)


def test_vllm_result_files_as_vllm_writes_them(tmp_path):
    """Issue 17.3-4: failures got e2e NaN and stayed in the system forever; an --append-result file
    failed; a *.pytorch.json sidecar broke the import; runs at rate inf, with max_concurrency or a
    ramp-up were dropped (or, for max_concurrency, judged as if open-loop) without a word."""
    ok = _vllm_result(4.0, 300, 0.05, 0.03)
    ok["errors"] = ["boom"] + [""] * 299  # 0.3 % failures: a stable run
    two = json.dumps(ok) + "\n" + json.dumps(_vllm_result(8.0, 300, 0.05, 0.03)) + "\n"
    closed = {**_vllm_result(16.0, 300, 0.05, 0.03), "max_concurrency": 8}
    flood = {**_vllm_result(4.0, 300, 0.05, 0.03), "request_rate": "inf"}
    res, doc = _import(tmp_path, {"r.json": two, "r.pytorch.json": "[1, 2]", "closed.json": json.dumps(closed),
                                  "flood.json": json.dumps(flood)})
    assert res.exit_code == 0, res.output
    assert doc["max_rate"][0][0] == 8.0  # both runs of the appended file, the failure leaving the system
    skipped = " | ".join(doc["measured"]["skipped"])
    assert "closed.json: skipped: max_concurrency 8" in skipped and "flood.json: skipped: request rate 'inf'" in skipped
    assert doc["measured"]["points"] == 2


def test_malformed_result_files_are_one_line_errors(tmp_path):
    """Issue 17.10: lists of different lengths, text in a number field, `benchmarks: 5` gave
    IndexError, ValueError, TypeError and AttributeError tracebacks."""
    short = {**_vllm_result(4.0, 10, 0.05, 0.03), "ttfts": [0.05] * 9}
    text = {**_vllm_result(4.0, 10, 0.05, 0.03), "input_lens": ["many"] * 10}
    for k, bad in enumerate((short, text, {"benchmarks": 5}, {"benchmarks": [{"config": 5}]})):
        (tmp_path / str(k)).mkdir()
        res, _ = _import(tmp_path / str(k), {"bad.json": json.dumps(bad)})
        assert res.exit_code == 2 and "Traceback" not in res.output and res.output.startswith("Error:"), res.output


def _guidellm08(rate: float, n: int, *, sent_rate: float | None = None, ttft: float = 0.1, itl: float = 0.01,
                out: int = 40, inp: int = 200, no_timing: int = 0) -> dict:
    """A GuideLLM 0.8 report (the layout of guidellm.benchmark.schemas: config.strategy, requests
    grouped by status, per-request info.timings and computed token counts) of one constant-rate run."""
    reqs = []
    for k in range(n):
        scheduled = 1000.0 + k / rate
        sent = 1000.0 + k / (sent_rate or rate)
        first, last = sent + ttft, sent + ttft + itl * (out - 1)
        if k < no_timing:
            first = last = -1.0
        reqs.append({"type_": "generative_request_stats", "request_id": str(k), "prompt_tokens": inp,
                     "output_tokens": out, "time_to_first_token_ms": (first - sent) * 1000,
                     "request_start_time": sent, "request_end_time": last,
                     "info": {"request_id": str(k), "timings": {"targeted_start": scheduled, "request_start": sent,
                                                                 "first_token_iteration": first,
                                                                 "last_token_iteration": last, "resolve_end": last}}})
    return {"benchmarks": [{"type_": "generative_benchmark",
                            "config": {"strategy": {"type_": "constant", "rate": rate, "max_concurrency": None,
                                                    "rampup_duration": 0.0}},
                            "requests": {"successful": reqs, "errored": [], "incomplete": []}},
                           {"config": {"strategy": {"type_": "synchronous"}}, "requests": {}}]}


def test_guidellm_08_reports_import_on_the_scheduled_clock(tmp_path):
    """Issue 17.1-2: GuideLLM 0.8.1's report imported as "0/60 buckets served, 0 points" with exit
    0; a client that fell behind (10 req/s scheduled, 5 sent) imported as passing at 10; a -1.0
    token time became a TTFT of -1.7e9 s that met the SLO."""
    for name in "abc":
        (tmp_path / name).mkdir()
    res, doc = _import(tmp_path / "a", {"g.json": json.dumps(_guidellm08(4.0, 300))})
    assert res.exit_code == 0 and doc["max_rate"][1][1] == 4.0, res.output  # bucket (1, 1): 200 in, 40 out
    assert "synchronous" in " ".join(doc["measured"]["skipped"])
    res, doc = _import(tmp_path / "b", {"g.json": json.dumps(_guidellm08(10.0, 600, sent_rate=5.0))})
    assert res.exit_code == 0 and doc["max_rate"][1][1] == 0.0, res.output  # judged, and failed
    res, doc = _import(tmp_path / "c", {"g.json": json.dumps(_guidellm08(4.0, 300, no_timing=60))})
    assert res.exit_code == 0 and doc["max_rate"][1][1] == 0.0  # 20 % without timings: failures, not instant tokens


def test_a_real_guidellm_08_report_imports_at_the_rate_guidellm_offered(tmp_path):
    """Issue 17 (must show): a GuideLLM 0.8.1 report of a constant-rate run against `emulate
    --fixed-ttft 100ms --fixed-itl 10ms` (tests/data/README.md) imports as a point of its bucket at
    the rate GuideLLM offered (it read as "0/60 buckets served, 0 points", exit 0)."""
    from pathlib import Path

    report = Path(__file__).parent / "data" / "guidellm-0.8.1-constant-4rps.json"
    out = tmp_path / "p.yaml"
    res = CliRunner().invoke(cli, ["profile", "--from-results", str(report), "--gpu", "A10G", "--model", "llama-2-7b",
                                   "--slo-tpot", "100ms", "--slo-ttft", "1s", "--attainment", "90%", "--grid",
                                   _grid(tmp_path, (1, 100, 400), (1, 20, 50)), "-o", str(out)])
    assert res.exit_code == 0, res.output
    doc = yaml.safe_load(out.read_text())
    assert doc["max_rate"][0][0] == 4.0 and doc["measured"]["points"] == 1  # 16 output tokens: bucket (0, 0)
