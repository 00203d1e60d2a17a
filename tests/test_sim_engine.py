"""The engine model: prefill-only steps read no KV, vLLM v0's prompt-token cap, the model's
context enforced, engine presets (sourced catalog data, chosen by scenarios and the CLI)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pytest
from click.testing import CliRunner

from melange.cli import cli
from melange.core import BucketGrid, EngineConfig, LinearStepModel, MelangeError, Plan, Slo, Workload
from melange.perf import RooflineParams, load_catalog, step_model
from melange.scenario import load_scenario
from melange.sim import Arrivals, Simulation

GRID = BucketGrid((1, 100_000), (1, 10_000))
WORKLOAD = Workload(GRID, np.ones((1, 1)), rate=1.0)


@dataclass
class Recorder:
    """A linear StepTimeModel that logs every step it is asked to time."""

    kv_capacity_tokens: int = 400_000
    calls: list = field(default_factory=list)

    def step_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        self.calls.append((prefill_tokens, decode_seqs, context_tokens))
        return 0.01 + 1e-5 * prefill_tokens + 1e-4 * decode_seqs + 1e-7 * context_tokens


def serve(times, prompts, outputs, engine: EngineConfig, model, exact: bool = True):
    n = len(times)
    arrivals = Arrivals(np.asarray(times, float), np.asarray(prompts), np.asarray(outputs),
                        np.zeros(n, int), np.zeros(n, int))
    plan = Plan({"G": 1}, {"G": np.ones((1, 1))}, cost=1.0)
    sim = Simulation(plan, arrivals, WORKLOAD, {"G": model}, {"G": engine}, np.random.default_rng(0),
                     exact=exact)
    sim.run()
    return sim.result(Slo(1e9)).records


def test_prefill_only_steps_read_no_decode_kv():
    # Long decodes hold KV while new prompts arrive: without chunked prefill those prompts get
    # prefill-only steps, which must not be charged for reading the decoders' KV.
    rec = Recorder()
    serve(np.arange(20) * 0.3, [3000] * 20, [200] * 20, EngineConfig(), rec)
    prefill_only = [c for c in rec.calls if c[0] > 0 and c[1] == 0]
    decode_with_kv = [c for c in rec.calls if c[1] > 0 and c[2] > 0]
    assert len(prefill_only) >= 10 and decode_with_kv  # the case arose, with KV held
    assert all(c[2] == 0 for c in prefill_only)


@pytest.mark.parametrize("exact", [True, False])
def test_prompt_tokens_per_step_are_capped_without_chunked_prefill(exact):
    # 50 prompts of 2,000 tokens at once, max_model_len 4,096: vLLM v0's budget is
    # max(4096, 2048) = 4,096 prompt tokens per step, so two prompts per prefill step.
    rec = Recorder()
    engine = EngineConfig(max_model_len=4096)
    r = serve(np.zeros(50), [2000] * 50, [5] * 50, engine, rec, exact=exact)
    assert max(c[0] for c in rec.calls) == 4000
    ttfts = np.sort(r["ttft_s"].to_numpy())
    assert len(np.unique(ttfts.round(9))) == 25  # 25 prefill steps of two prompts each


def test_fast_path_equals_exact_when_the_cap_holds_prompts_back():
    engine = EngineConfig(max_model_len=2048, max_num_seqs=64)
    model = LinearStepModel(0.01, 1e-5, 1e-4, 1e-7, kv_capacity_tokens=400_000)
    times = np.sort(np.random.default_rng(3).uniform(0, 5, 120))
    prompts = np.random.default_rng(4).integers(500, 2000, 120)
    outputs = np.random.default_rng(5).integers(2, 300, 120)
    a = serve(times, prompts, outputs, engine, model, exact=True)
    b = serve(times, prompts, outputs, engine, model, exact=False)
    assert a["error"].notna().sum() > 5  # some exceed the 2,048-token context
    for col in ("e2e_s", "ttft_s", "queue_s"):
        assert np.allclose(a[col], b[col], rtol=1e-9, atol=1e-9, equal_nan=True), col


def test_requests_longer_than_the_model_context_fail_too_long(tmp_path):
    scenario = tmp_path / "s.yaml"
    scenario.write_text(
        "model: llama-2-7b\n"
        "grid: {input_edges: [1, 1000, 8000], output_edges: [1, 100]}\n"
        "workload: {rate: 1, distribution: [[0.5], [0.5]]}\n"
        "gpus: [{name: A100, catalog: A100-80GB, step_time: roofline, profile: [[1.0], [1.0]]}]\n")
    sc = load_scenario(scenario)
    assert sc.engines["A100"].max_model_len == 4096  # Llama-2's context reached the engine
    from melange.sim import simulate

    plan = Plan({"A100": 1}, {"A100": np.ones((2, 1))}, cost=1.0)
    r = simulate(plan, sc.workload, sc.step_models, sc.engines, Slo(1e9), requests=200, seed=1)
    long = r.records["input_tokens"] + r.records["output_tokens"] > 4096
    assert long.any() and (~long).any()
    assert (r.records.loc[long, "error"] == "too_long").all()
    assert r.records.loc[~long, "error"].isna().all()


def test_engine_presets_are_sourced_catalog_data_with_today_as_default():
    cat = load_catalog()
    paper, today = cat.engine("vllm-0.2"), cat.engine(None)
    # Fitted to the paper's ~12.5 ms batch-1 decode (scripts/calibrate.py): ~3.7 ms, 150 us/seq.
    assert 0.003 < paper.overhead_s < 0.0045 and paper.per_seq_s == 150e-6
    assert today.name == "vllm-0.23" and today.overhead_s < paper.overhead_s
    assert all(len(e.source) > 100 and "Fitted:" in e.source for e in cat.engines.values())
    assert step_model("A100-80GB", "llama-2-7b").overhead_s == today.overhead_s
    m = step_model("A100-80GB", "llama-2-7b", params=RooflineParams(preset="vllm-0.2"))
    assert (m.overhead_s, m.per_seq_s) == (paper.overhead_s, 150e-6)
    with pytest.raises(MelangeError, match="unknown engine preset 'vllm-9'; known: .*vllm-0.2"):
        cat.engine("vllm-9")


def test_scenarios_choose_a_preset_and_the_default_uses_today(tmp_path):
    assert load_scenario().step_models["A100-80GB"].overhead_s == load_catalog().engine().overhead_s
    base = ("model: llama-2-7b\nworkload: {rate: 1, distribution: {trace: splitwise_conv}}\n"
            "gpus: [{name: A100, catalog: A100-80GB, step_time: roofline}]\n")
    (tmp_path / "paper.yaml").write_text("engine_preset: vllm-0.2\n" + base)
    assert load_scenario(tmp_path / "paper.yaml").step_models["A100"].per_seq_s == 150e-6
    (tmp_path / "bad.yaml").write_text("engine_preset: vllm-9\n" + base)
    with pytest.raises(MelangeError, match="engine_preset: unknown engine preset"):
        load_scenario(tmp_path / "bad.yaml")


def test_profile_cli_refuses_an_unknown_preset_in_one_line(tmp_path):
    res = CliRunner().invoke(cli, ["profile", "--simulate", "--gpu", "A10G", "--model", "llama-2-7b",
                                   "--slo-tpot", "100ms", "--engine-preset", "vllm-9", "--no-cache",
                                   "--quiet", "-o", str(tmp_path / "p.yaml")])
    assert res.exit_code == 2 and "unknown engine preset" in res.output
    assert res.output.strip().count("\n") == 0
