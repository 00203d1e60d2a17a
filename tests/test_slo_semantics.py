"""SLO, profile and rate semantics: what a plan is checked against is what it was solved for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from melange.cli import cli
from melange.core import Arrival, BucketGrid, MelangeError, Slo, Workload
from melange.scenario import DEFAULT_SCENARIO, load_scenario
from melange.sim import make_arrivals
from melange.traces import load_trace

PROFILES = DEFAULT_SCENARIO.parent / "profiles" / "mistral-7b"


def default_doc() -> dict:
    """The built-in scenario with absolute profile paths, to edit and write elsewhere."""
    doc = yaml.safe_load(DEFAULT_SCENARIO.read_text())
    for g in doc["gpus"]:
        g["profile"] = str(DEFAULT_SCENARIO.parent / g["profile"])
    return doc


def write(tmp_path: Path, doc: dict) -> str:
    path = tmp_path / "sc.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_decode_tpot_without_a_ttft_limit_is_refused_with_the_reason(tmp_path):
    # One A100 used to "meet" 320 req/s this way, with a p99 queue of 192 s.
    with pytest.raises(MelangeError, match="slo.ttft_ms: required with definition 'decode'.*queueing"):
        Slo(100, "decode")
    doc = default_doc()
    doc["slo"] = {"tpot_ms": 100, "definition": "decode", "attainment": 0.99}
    result = CliRunner().invoke(cli, ["solve", write(tmp_path, doc)])
    assert result.exit_code == 2 and "slo.ttft_ms" in result.output and "Traceback" not in result.output
    assert Slo(100, "decode", 3000).ttft_ms == 3000 and Slo(100).definition == "mean"


@pytest.mark.parametrize("edit,field", [
    (lambda d: d["gpus"][0].update(profile=str(PROFILES / "H100-tpot100-decode-ttft3s.yaml")), "gpu"),
    (lambda d: d["slo"].update(tpot_ms=20), "slo.tpot_ms"),
    (lambda d: d["slo"].update(ttft_ms=1000), "slo.ttft_ms"),
    (lambda d: d["slo"].update(attainment=0.9), "slo.attainment"),
    (lambda d: d.update(model="llama-2-7b"), "model"),
])
def test_a_profile_made_for_another_setup_is_refused_unless_forced(tmp_path, edit, field):
    doc = default_doc()
    edit(doc)
    path = write(tmp_path, doc)
    result = CliRunner().invoke(cli, ["solve", path])
    assert result.exit_code == 2, result.output
    line = " ".join(result.output.split())
    assert f"{field}: file has" in line and "--force" in line and "Traceback" not in line
    assert CliRunner().invoke(cli, ["solve", path, "--force"]).exit_code == 0
    load_scenario(path, force=True)


def test_matching_profiles_load_unchanged():
    sc = load_scenario()
    assert set(sc.profiles) == {"L4", "A10G", "A100-80GB", "H100"}


def conv(rate: float, scale: bool) -> Workload:
    grid = BucketGrid.paper()
    return Workload(grid, np.full(grid.shape, 1 / 60), rate, Arrival("trace", trace="splitwise_conv",
                                                                      scale_to_rate=scale))


def test_unscaled_trace_replay_at_another_rate_is_refused():
    # It used to replay the trace's own 5.5 req/s while the plan was solved for 16.
    with pytest.raises(MelangeError, match="scale_to_rate: false replays the trace at its own 5.53 req/s"):
        make_arrivals(conv(16.0, False), np.random.default_rng(0), requests=100)
    a = make_arrivals(conv(5.53, False), np.random.default_rng(0), requests=2000)  # its own rate
    assert np.array_equal(a.time_s, load_trace("splitwise_conv").arrival_s[:2000])
    scaled = make_arrivals(conv(16.0, True), np.random.default_rng(0))
    assert abs((len(scaled) - 1) / scaled.time_s[-1] / 16 - 1) < 0.02


def test_plan_refuses_an_unscaled_trace_at_another_rate(tmp_path):
    doc = default_doc()
    doc["workload"]["arrival"] = {"process": "trace", "scale_to_rate": False}
    result = CliRunner().invoke(cli, ["plan", write(tmp_path, doc), "--requests", "2000"])
    assert result.exit_code == 2 and "scale_to_rate" in result.output and "Traceback" not in result.output


# --- the paper's averaged SLO (definition: mean_itl) -------------------------------------------

def _mean_run(decode_s, gaps, limit_ms=100.0, ttft_limit_ms=None):
    from melange.acceptance import MeanSlo, judge

    n = len(decode_s)
    arrival = np.arange(n, dtype=float)
    means = MeanSlo(np.asarray(decode_s, float), np.asarray(gaps, float), np.full(n, 0.5), limit_ms / 1000,
                    None if ttft_limit_ms is None else ttft_limit_ms / 1000)
    return judge(arrival, arrival + 1.0, np.ones(n, bool), 0.99, means=means)


def test_mean_itl_pools_every_gap_as_the_papers_profiler_did():
    """500 requests: 250 with 99 gaps of 50 ms, 250 with 1 gap of 2 s. Pooled over gaps the mean
    is (250·99·0.05 + 250·2) / (250·100) = 69.5 ms: passes 100 ms, although the per-request mean
    TPOT (1.025 s) and a p99 would fail."""
    decode = [99 * 0.05] * 250 + [2.0] * 250
    gaps = [99] * 250 + [1] * 250
    assert _mean_run(decode, gaps).passed
    v = _mean_run(decode, gaps, limit_ms=69.0)
    assert not v.passed and v.reason == "SLO: mean ITL 69.5 ms above 69 ms"


def test_mean_itl_limits_the_mean_ttft_when_given():
    v = _mean_run([1.0] * 500, [20] * 500, ttft_limit_ms=400)
    assert not v.passed and v.reason == "SLO: mean TTFT 500 ms above 400 ms"
    assert _mean_run([1.0] * 500, [20] * 500, ttft_limit_ms=600).passed


def test_a_request_that_never_completed_misses_under_mean_itl():
    from melange.metrics import slo_met

    frame = pd.DataFrame({"error": [None, "too_long"], "e2e_s": [1.0, np.nan], "ttft_s": [0.1, np.nan],
                          "output_tokens": [10, 10]})
    assert slo_met(frame, Slo(100, "mean_itl")).tolist() == [True, False]


def test_a10g_long_bucket_under_the_papers_rule_is_5x_the_p99_rule():
    """Issue 15: bucket 2000-4000 in / 250-500 out at 120 ms on A10G (vllm-0.2): 0.034 req/s under
    p99 decode TPOT + TTFT <= 3 s, 0.168 under the paper's mean ITL (KV cache holds four prompts)."""
    from melange.core import BucketGrid, EngineConfig
    from melange.perf.catalog import load_catalog
    from melange.perf.profile_sim import build_profile
    from melange.perf.roofline import RooflineParams

    cat = load_catalog()
    prof = build_profile(cat.instance("A10G"), "llama-2-7b", Slo(120, "mean_itl"), BucketGrid((2000, 4000), (250, 500)),
                         engine=EngineConfig(max_model_len=4998), cache=False, workers=1,
                         roofline=RooflineParams(preset="vllm-0.2"))
    assert 0.14 <= prof.max_rate[0, 0] <= 0.22
