"""Roofline step-time model: hand-checked numbers, tensor parallelism, memory fit."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.core import EngineConfig, MelangeError
from melange.perf import step_model
from melange.perf.catalog import GB, GIB, Instance, load_catalog
from melange.perf.roofline import (
    NON_TORCH_BYTES,
    RooflineParams,
    activation_peak_bytes,
    kv_capacity_tokens,
    roofline_model,
)

CAT = load_catalog()
LLAMA7 = CAT.model("llama-2-7b")
A100 = CAT.instance("A100-80GB")
FIT = CAT.calibration.fit(A100.gpu)  # ga100: the efficiencies scripts/calibrate.py fitted
KAPPA = CAT.calibration.overlap
TODAY = CAT.engine(None)  # vllm-0.23, its overhead fitted to published figures


def test_llama2_7b_weights_and_kv_bytes_per_token():
    assert LLAMA7.weight_bytes == pytest.approx(13.48e9, rel=1e-3)
    assert LLAMA7.kv_bytes_per_token == 2 * 32 * 32 * 128 * 2 == 524_288


def test_batch1_decode_on_a100_reads_weights_in_about_7ms():
    m = roofline_model(A100, LLAMA7)
    # 13.48 GB at 1,935 GB/s = 6.97 ms before efficiency; / 0.81 fitted efficiency = 8.6 ms.
    assert LLAMA7.weight_bytes / (1935 * GB) == pytest.approx(6.97e-3, rel=1e-2)
    memory = m.memory_time(0, 1, 0)
    assert memory == pytest.approx(6.97e-3 / FIT.bandwidth_efficiency, rel=1e-2)
    compute = m.compute_time(0, 1, 0)
    assert compute < memory / 50  # decode at batch 1 is memory bound
    # vllm-0.23: its overhead + 20 us; a CUDA-graph decode step pays no kernel floor.
    assert m.step_time(0, 1, 0) == pytest.approx(TODAY.overhead_s + 20e-6 + memory + KAPPA * compute, rel=1e-6)


def test_decode_kv_reads_add_bandwidth_time():
    m = roofline_model(A100, LLAMA7)
    # 10,000 context tokens x 0.524 MB = 5.24 GB more to read at 0.81 x 1,935 GB/s, plus the
    # unhidden share of the attention FLOPs (4 x 32 x 4096 x 10,000 at 0.7 x 312 TFLOP/s).
    extra = m.step_time(0, 1, 10_000) - m.step_time(0, 1, 0)
    flops = 4 * 32 * 4096 * 10_000
    assert extra == pytest.approx(10_000 * 524_288 / (FIT.bandwidth_efficiency * 1935e9)
                                  + KAPPA * flops / (FIT.flops_efficiency * 312e12), rel=1e-3)


def test_long_prefill_is_compute_bound_with_attention():
    m = roofline_model(A100, LLAMA7)
    # 2,000 tokens: 2 x 6.738e9 x 2000 = 26.95 TFLOP linear + 2 x 32 x 4096 x 2000^2 = 1.05 TFLOP
    # attention, at 0.7 x 312 TFLOP/s = 128 ms.
    flops = 2 * 6.738e9 * 2000 + 2 * 32 * 4096 * 2000 ** 2
    compute = flops / (FIT.flops_efficiency * 312e12)
    assert m.compute_time(2000, 0, 0) == pytest.approx(compute, rel=1e-6)
    memory = m.memory_time(2000, 0, 0)
    assert compute > memory
    # An eager (prefilling) step pays the kernel floor of its 32 layers.
    floor = 32 * CAT.calibration.layer_floor_s
    assert m.step_time(2000, 0, 0) == pytest.approx(TODAY.overhead_s + floor + compute + KAPPA * memory, rel=1e-6)


def test_tensor_parallel_allreduce_adds_time_at_equal_per_gpu_work():
    h1, h4 = CAT.instance("H100"), CAT.instance("4xH100")
    one = roofline_model(h1, LLAMA7)
    assert one.allreduce_time(0, 8) == 0.0
    # Equal per-GPU work: a model with 4x the parameters on 4 GPUs, reading 4x the context, has
    # the same FLOPs and bytes per GPU as llama-2-7b on one; only the all-reduces differ.
    big = dataclasses.replace(LLAMA7, params=LLAMA7.params * 4, name="llama-4x")
    four = roofline_model(h4, big)
    d, c = 8, 8000
    assert four.compute_time(0, d, 4 * c) == pytest.approx(one.compute_time(0, d, c), rel=1e-9)
    assert four.memory_time(0, d, 4 * c) == pytest.approx(one.memory_time(0, d, c), rel=1e-9)
    # Two ring all-reduces per layer: 2(N-1)/N x tokens x hidden x 2 bytes over 70 % of 450 GB/s
    # + 25 us (Vidur's measured H100 all-reduce).
    ring_bytes = 2 * 3 / 4 * d * 4096 * 2
    expected = 2 * 32 * (25e-6 + ring_bytes / (0.7 * 450e9))
    assert four.allreduce_time(0, d) == pytest.approx(expected, rel=1e-9)
    assert four.step_time(0, d, 4 * c) - one.step_time(0, d, c) == pytest.approx(expected, rel=1e-6)


def test_allreduce_grows_with_gpus_and_is_slower_over_pcie():
    nv = [roofline_model(CAT.instance(f"{n}xH100"), LLAMA7).allreduce_time(0, 64) for n in (2, 4, 8)]
    assert nv[0] < nv[1] < nv[2]
    pcie = roofline_model(CAT.instance("2xH100-PCIe"), LLAMA7).allreduce_time(0, 64)
    assert pcie > nv[0]


def test_pcie_cards_bridge_pairs_only():
    # A100-80GB (the PCIe card): an NVLink bridge joins two GPUs; four all-reduce over PCIe Gen4.
    two, four = (roofline_model(CAT.instance(f"{n}xA100-80GB"), LLAMA7) for n in (2, 4))
    sxm4 = roofline_model(CAT.instance("4xA100-80GB-SXM"), LLAMA7)
    ring4 = 2 * 3 / 4 * 64 * 4096 * 2
    assert four.allreduce_time(0, 64) == pytest.approx(2 * 32 * (25e-6 + ring4 / (0.7 * 32e9)), rel=1e-9)
    assert sxm4.allreduce_time(0, 64) < four.allreduce_time(0, 64) / 2
    assert CAT.gpu("A100-80GB").link(2) == ("nvlink", 300e9) and CAT.gpu("A100-80GB").link(4)[0] == "pcie"


def test_kv_capacity_matches_hand_computation_on_a10g():
    a10g = CAT.instance("A10G")
    eng = EngineConfig()
    # vLLM's profiling pass: max(max_model_len = 4,096, 2,048) tokens of MLP and hidden buffers.
    peak = 4096 * 2 * (3 * 11008 + 4 * 4096)
    assert activation_peak_bytes(LLAMA7, a10g, eng) == pytest.approx(peak)
    free = 22.06 * GIB * 0.9 - 13.476e9 - peak - NON_TORCH_BYTES
    assert kv_capacity_tokens(LLAMA7, a10g, eng) == int(free // (16 * 524_288)) * 16


def test_70b_does_not_fit_on_one_a10g():
    with pytest.raises(MelangeError, match=r"llama-2-70b \(138 GB of weights\) does not fit on A10G \(24 GB × 0.9\)"):
        step_model("A10G", "llama-2-70b")


def test_70b_fits_on_4xa100_80gb_and_8xa10g_but_not_4xa10g():
    assert step_model("4xA100-80GB", "llama-2-70b").kv_capacity_tokens > 100_000
    assert step_model("8xA10G", "llama-2-70b").kv_capacity_tokens > 10_000
    with pytest.raises(MelangeError, match="does not fit on 4xA10G"):
        step_model("4xA10G", "llama-2-70b")


def test_memory_utilization_changes_capacity():
    lo = step_model("A100-80GB", "llama-2-7b", params=RooflineParams(memory_utilization=0.5))
    hi = step_model("A100-80GB", "llama-2-7b")
    assert lo.kv_capacity_tokens < hi.kv_capacity_tokens


def test_linearized_agrees_in_the_memory_bound_decode_regime():
    m = roofline_model(A100, LLAMA7)
    lin = m.linearized()
    for d, c in ((1, 100), (16, 16_000), (64, 64_000)):
        assert lin.step_time(0, d, c) == pytest.approx(m.step_time(0, d, c), rel=0.02)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(["L4", "A10G", "A100-80GB", "H100", "2xH100", "L40S"]),
       st.integers(0, 8000), st.integers(0, 256), st.integers(0, 200_000))
def test_step_time_is_positive_and_monotone(gpu, prefill, decode, context):
    m = step_model(gpu, "llama-2-7b")
    t = m.step_time(prefill, decode, context)
    if prefill == decode == 0:
        assert t == 0.0
        return
    assert t >= m.overhead_s
    assert m.step_time(prefill + 1, decode, context) >= t
    assert m.step_time(prefill, decode + 1, context) >= t
    assert m.step_time(prefill, decode, context + 1000) >= t


def test_faster_gpu_has_shorter_steps():
    ts = [step_model(g, "llama-2-7b").step_time(0, 16, 16_000) for g in ("L4", "A10G", "A100-80GB", "H100")]
    assert ts == sorted(ts, reverse=True)


def test_instance_cost_scales_with_gpus():
    assert CAT.instance("8xH100").cost == pytest.approx(8 * 7.516)
    assert CAT.instance("4xh100").name == "4xH100"
    assert isinstance(CAT.instance("A10G"), Instance)
