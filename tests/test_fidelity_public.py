"""The calibrated step model pinned to public measurements of real GPUs, and vLLM's KV arithmetic.

Fails if a change to the roofline, the catalog, the engine or the calibration pushes any public
point out of its band (0.75-1.33x), the median error over 10 %, or the held-out part over 10 %.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.core import EngineConfig
from melange.perf import step_model
from melange.perf.catalog import GIB, load_catalog
from melange.perf.roofline import NON_TORCH_BYTES, activation_peak_bytes, kv_blocks, kv_capacity_tokens
from melange.validate import fidelity

ROOT = Path(__file__).resolve().parent.parent
CAT = load_catalog()
BAND = (0.75, 1.33)


@pytest.fixture(scope="module")
def points():
    return fidelity.all_points(CAT)


def test_every_public_point_is_inside_its_band(points):
    out = [f"{p.source} {p.gpu} {p.model} {p.conditions} {p.metric}: {p.ratio:.3f}"
           for p in points if not BAND[0] <= p.ratio <= BAND[1]]
    assert not out, "\n".join(out)


def test_median_error_overall_and_held_out(points):
    s = fidelity.summary(points)
    assert s["points"] >= 300
    assert s["median_abs_error"] <= 0.10
    assert s["heldout"]["points"] >= 100 and s["heldout"]["median_abs_error"] <= 0.10
    # Every source and every measured GPU family is in the set.
    assert set(s["per_source"]) == {"vidur", "lambda", "published"}
    assert {"A100-80GB-SXM", "H100", "A40", "L4"} <= set(s["per_gpu"])


def test_the_uncalibrated_model_misses_the_knee_the_calibration_fixes():
    # Before: perfect overlap and no kernel floor; H100 at 256 tokens (the knee) came out 0.6x.
    import dataclasses

    from melange.perf.catalog import Calibration
    before = dataclasses.replace(CAT, calibration=Calibration())

    def knee(cat):
        return next(p for p in fidelity.kernel_points(cat)
                    if p.gpu == "H100" and p.model == "llama-2-7b" and p.conditions == "TP1, 256 tokens")
    assert knee(before).ratio < 0.75
    assert 0.85 < knee(CAT).ratio < 1.15


def test_fitted_families_carry_narrow_bands_and_unmeasured_ones_wide():
    fitted = {f: CAT.calibration.families[f] for f in ("ga100", "ga102", "gh100")}
    for fit in fitted.values():
        assert fit.points >= 50 and fit.uncertainty <= 0.1
    l4 = CAT.calibration.fit(CAT.gpu("L4"))
    assert l4.points == 0 and l4.uncertainty == 0.25  # the README quotes it
    # A GPU fitted only through a sibling (A10G through the A40, H200 through the H100) shares the
    # efficiencies with a wider band than the measured one.
    for sibling, measured in (("A10G", "A40"), ("H200", "H100"), ("A100-80GB", "A100-80GB-SXM")):
        s, m = CAT.calibration.fit(CAT.gpu(sibling)), CAT.calibration.fit(CAT.gpu(measured))
        assert s.flops_efficiency == m.flops_efficiency and s.uncertainty >= 0.15 > m.uncertainty


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(["L4", "A10G", "A100-80GB", "H100", "2xH100"]), st.integers(1, 256),
       st.integers(0, 100_000), st.integers(0, 50))
def test_decode_lines_equal_step_times_with_imperfect_overlap(gpu, n, context, s):
    m = step_model(gpu, "llama-2-7b")
    lines = m.decode_lines(n, context)
    assert max(a + b * s for a, b in lines) == pytest.approx(m.step_time(0, n, context + n * s), rel=1e-9)


# --- KV capacity: vLLM's own arithmetic -------------------------------------------------------

def vllm_num_blocks(total_gib, util, weights_gib, activation_gib, non_torch_gib, layers, kv_heads,
                    head_dim, block_size=16, dtype_bytes=2):
    """vLLM's sizing, written from its source: vllm/worker/worker.py determine_num_available_blocks
    (v0.6.5+: available = total × gpu_memory_utilization − (weights + torch peak increase +
    non-torch increase)), vllm/worker/cache_engine.py get_cache_block_size (block_size ×
    num_kv_heads × head_size × num_layers × 2 × dtype bytes), num_gpu_blocks = int(available //
    block bytes); V1: vllm/v1/worker/gpu_worker.py determine_available_memory and
    vllm/v1/core/kv_cache_utils.py get_num_blocks, the same integer."""
    available = (total_gib * util - (weights_gib + activation_gib + non_torch_gib)) * GIB
    return int(available // (block_size * kv_heads * head_dim * layers * 2 * dtype_bytes))


# Public vLLM logs: (model, total GiB, util, weights, activation peak, non-torch, logged blocks).
VLLM_LOGS = [
    # OCI ai-quick-actions troubleshooting-tips.md: Llama-3.1-8B on an A10 (24 GB), "# CUDA blocks: 2356"
    ("llama-3-8b", 22.07, 0.90, 14.99, 0.22, 0.05, 2356),
    # vllm-project/vllm#10517: Llama-3.1-8B on an RTX 3090, max_model_len 20,000: 1,952 blocks
    ("llama-3-8b", 23.58, 0.90, 17.06 - 2.07, 2.07, 0.35, 1952),
    # vLLM issue log: Llama-3-8B on an A100-40GB, max_model_len 8,192: 5,691 blocks
    ("llama-3-8b", 39.50, 0.90, 14.96, 9.37, 0.10, 5691),
]


@pytest.mark.parametrize("model, total, util, weights, act, non_torch, logged", VLLM_LOGS)
def test_vllm_arithmetic_reproduces_public_logs(model, total, util, weights, act, non_torch, logged):
    spec = CAT.model(model)
    got = vllm_num_blocks(total, util, weights, act, non_torch, spec.layers, spec.kv_heads, spec.head_dim)
    # The logs print GiB to two decimals: +-0.005 GiB on each of four terms is ~10 blocks of 2 MiB.
    assert abs(got - logged) <= 10


@pytest.mark.parametrize("model", ["llama-2-7b", "llama-3-8b", "mistral-7b"])
@pytest.mark.parametrize("gpu", ["A10G", "L4"])
def test_kv_capacity_on_a_24gb_card_is_vllms_arithmetic(model, gpu):
    spec, inst = CAT.model(model), CAT.instance(gpu)
    engine = EngineConfig(max_num_batched_tokens=2048)
    ours = kv_capacity_tokens(spec, inst, engine, 0.9)
    theirs = 16 * vllm_num_blocks(inst.gpu.usable_memory / GIB, 0.9, spec.weight_bytes / GIB,
                                  activation_peak_bytes(spec, inst, engine) / GIB,
                                  NON_TORCH_BYTES / GIB, spec.layers, spec.kv_heads, spec.head_dim)
    assert abs(ours - theirs) <= 16  # within one block
    assert ours == 16 * kv_blocks(inst.gpu.usable_memory, 0.9, spec.weight_bytes,
                                  activation_peak_bytes(spec, inst, engine), NON_TORCH_BYTES,
                                  16 * spec.kv_bytes_per_token)


def test_activation_estimate_is_near_vllms_measured_peaks():
    # vLLM logged 0.22 GiB at 2,048 profiled tokens (OCI A10) and 2.07 GiB at 20,000 (vllm#10517).
    spec, inst = CAT.model("llama-3-8b"), CAT.instance("A10G")
    for tokens, logged in ((2048, 0.22), (20_000, 2.07)):
        est = activation_peak_bytes(spec, inst, EngineConfig(max_num_batched_tokens=tokens)) / GIB
        assert est == pytest.approx(logged, rel=0.15)


def test_mistral_on_a10g_is_within_5_percent_of_the_logged_cache():
    # A10G (AWS g5.xlarge), vLLM 0.9 V1, util 0.92, weights 13.4967 GiB: 50,496 tokens of KV.
    got = kv_capacity_tokens(CAT.model("mistral-7b"), CAT.instance("A10G"),
                             EngineConfig(max_num_batched_tokens=2048), 0.92)
    assert got == pytest.approx(50_496, rel=0.05)


@pytest.mark.slow
def test_shipped_calibration_is_what_the_script_fits():
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "calibrate.py"), "--check"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr


def test_a100_sxm_and_pcie_are_separate_entries():
    sxm, pcie = CAT.gpu("A100-80GB-SXM"), CAT.gpu("A100-80GB")
    assert sxm.bandwidth == pytest.approx(2039e9) and pcie.bandwidth == pytest.approx(1935e9)
    assert sxm.family == pcie.family == "ga100"
    assert math.isclose(step_model("A100-80GB-SXM", "llama-2-7b").step_time(0, 1, 0)
                        / step_model("A100-80GB", "llama-2-7b").step_time(0, 1, 0), 1935 / 2039, rel_tol=0.05)


def test_the_lambda_extract_is_what_the_script_reads_from_raw_results(tmp_path):
    """scripts/extract_measurements.py keeps the August (v0.5.4) BF16 one-GPU runs and nothing else."""
    import importlib.util
    import json

    spec = importlib.util.spec_from_file_location("extract", ROOT / "scripts" / "extract_measurements.py")
    extract = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(extract)
    shipped = json.loads((fidelity.MEASUREMENTS / "lambda_vllm_0.5.4.json").read_text())["runs"]
    names = {"mistral-7b": "mistralai/Mistral-7B-Instruct-v0.3"}
    for run in shipped:  # the raw benchmark_serving files these runs came from
        raw = {k: v for k, v in run.items() if k not in ("file", "commit", "gpu", "model", "max_model_len")}
        path = tmp_path / run["file"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({**raw, "model_id": names[run["model"]]}))
    september = tmp_path / "results/prompt_10/1xH100-80GB-SXM/Mistral-7B-Instruct-v0.3_tp1_len2048.json"
    september.write_text(json.dumps({**raw, "date": "20240907-082900", "model_id": names["mistral-7b"]}))
    fp8 = tmp_path / "results/prompt_10/1xH100-80GB-SXM/Meta-Llama-3.1-8B-FP8_tp1_len2000.json"
    fp8.write_text(json.dumps({**raw, "model_id": "neuralmagic/Meta-Llama-3.1-8B-FP8"}))
    got = sorted(extract.lambda_runs(tmp_path), key=lambda r: r["file"])
    strip = lambda r: {k: v for k, v in r.items() if k != "commit"}  # noqa: E731
    assert [strip(r) for r in got] == [strip(r) for r in sorted(shipped, key=lambda r: r["file"])]
