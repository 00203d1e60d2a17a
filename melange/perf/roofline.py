"""Step times from hardware specs: a roofline model of one engine iteration.

One iteration (vLLM-style continuous batching) prefills some prompt tokens and decodes one token
for each running sequence. Its time is

    t = overhead + per_seq · decode_seqs + max(compute_time, memory_time) + allreduce_time

- compute_time: FLOPs / (peak dense FLOP/s × flops_efficiency). FLOPs are 2·params per token
  (prefill and decode tokens alike), plus causal prefill attention 2·layers·d·P² and decode
  attention 4·layers·d·context (d = heads × head_dim). P² treats the step's prompts as one: it
  overestimates when several short prompts share a step, which only matters for long prompts.
- memory_time: bytes / (bandwidth × bandwidth_efficiency). Every step reads all weights once,
  reads the KV cache of every decoding sequence (context × KV bytes per token) and writes the
  KV of the prefilled tokens.
- allreduce_time (tensor parallel, N > 1 GPUs): Megatron-style layers all-reduce their output
  twice per layer (after attention and after the MLP); a ring all-reduce of B bytes moves
  2(N−1)/N · B over each link, plus a fixed latency per call. Not overlapped with compute.

Why these efficiency defaults:
- flops_efficiency 0.6: well-tuned prefill GEMMs + FlashAttention reach 50–70 % of dense peak
  (model FLOPs utilisation) on A100/H100; 0.6 is the middle.
- bandwidth_efficiency 0.8: streaming reads reach ~80–90 % of datasheet HBM/GDDR bandwidth, and
  decode kernels at small batch sit at the low end.
- overhead_s 4 ms: vLLM's CPU side (scheduler, input preparation, sampler, Python) costs a few
  ms per iteration, which is why its batch-1 decode of a 7B model on an A100 takes ~12–13 ms,
  not the 8.7 ms of the bandwidth bound alone.
- per_seq_s 150 µs: per-sequence CPU work (block tables, sampling, detokenisation, output
  processing) grows with the batch. The default is calibrated to the engines the Mélange paper
  measured (vLLM 0.2–0.5), which did that work in Python every step: the vLLM team measured that
  before v0.6 only 38 % of each step ran on the GPU for an 8B model on an H100 at large batch,
  and 0.2.7 was slower still. At 150 µs a 256-sequence batch spends ~42 ms on the CPU, about
  70 % of its step on an A100. This cost is the same on every GPU, so it narrows the gap between
  fast and slow GPUs — the reason cheap GPUs win on small requests in the paper's measurements.
  With v0.6-era overheads (~40 µs) the A100 wins those buckets too (the A10G/A100 small-bucket
  ratio of benchmarks/cost_efficiency.py fell from 1.24 to about 0.8); for today's engines, fit
  the step model to measurements (melange.perf.fit).
- allreduce latency: ~10 µs per NVLink all-reduce, ~25 µs over PCIe (NCCL small-message latency).

KV capacity follows vLLM: memory × gpu_memory_utilization − weights − activation reserve, divided
by the KV bytes per token, summed over the instance's GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from melange.core import EngineConfig, LinearStepModel, MelangeError
from melange.perf.catalog import GB, Instance, ModelSpec

DEFAULT_MEMORY_UTILIZATION = 0.9  # vLLM's gpu_memory_utilization default
PROFILE_TOKENS = 4096  # tokens of vLLM's activation-profiling batch without chunked prefill
FIXED_RESERVE_BYTES = 0.5 * GB  # per GPU: CUDA graphs, NCCL buffers, allocator slack
ALLREDUCE_LATENCY_S = {"nvlink": 10e-6, "pcie": 25e-6}


@dataclass(frozen=True)
class RooflineParams:
    """Efficiency factors and overheads of the roofline (see the module docstring for why)."""

    flops_efficiency: float = 0.6
    bandwidth_efficiency: float = 0.8
    overhead_s: float = 0.004
    per_seq_s: float = 150e-6
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION

    def __post_init__(self) -> None:
        for name in ("flops_efficiency", "bandwidth_efficiency", "memory_utilization"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise MelangeError(f"roofline.{name}: must be in (0, 1], got {value}")
        if self.overhead_s < 0 or self.per_seq_s < 0:
            raise MelangeError("roofline overheads must be >= 0")


@dataclass(frozen=True)
class RooflineModel:
    """Step time of one instance serving one model, from hardware specs (a StepTimeModel)."""

    name: str
    kv_capacity_tokens: int
    overhead_s: float
    per_seq_s: float
    flops_per_s: float  # achievable, whole instance
    bytes_per_s: float  # achievable memory bandwidth, whole instance
    weight_bytes: float
    kv_bytes_per_token: float
    flops_per_token: float  # 2 · params
    attn_dim_layers: float  # layers · heads · head_dim
    allreduce_s_per_token: float  # ring all-reduce transfer time per token, both per-layer calls
    allreduce_latency_s: float  # fixed latency of all all-reduces in one step

    def compute_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Seconds the step's FLOPs take at the achievable FLOP rate."""
        flops = (self.flops_per_token * (prefill_tokens + decode_seqs)
                 + 2.0 * self.attn_dim_layers * prefill_tokens * prefill_tokens
                 + 4.0 * self.attn_dim_layers * context_tokens)
        return flops / self.flops_per_s

    def memory_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Seconds the step's memory traffic takes at the achievable bandwidth."""
        moved = self.weight_bytes + self.kv_bytes_per_token * (context_tokens + prefill_tokens)
        return moved / self.bytes_per_s

    def allreduce_time(self, prefill_tokens: int, decode_seqs: int) -> float:
        """Seconds of tensor-parallel all-reduces (0 on one GPU)."""
        tokens = prefill_tokens + decode_seqs
        if tokens == 0:
            return 0.0
        return self.allreduce_latency_s + self.allreduce_s_per_token * tokens

    def step_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Seconds for one engine iteration."""
        if prefill_tokens == 0 and decode_seqs == 0:
            return 0.0
        return (self.overhead_s + self.per_seq_s * decode_seqs
                + max(self.compute_time(prefill_tokens, decode_seqs, context_tokens),
                      self.memory_time(prefill_tokens, decode_seqs, context_tokens))
                + self.allreduce_time(prefill_tokens, decode_seqs))

    def linearized(self) -> LinearStepModel:
        """The linear model closest to this one in its usual regime: decode memory bound
        (weights + KV reads), prefill compute bound; drops the max() and prefill attention."""
        return LinearStepModel(
            alpha=self.overhead_s + self.weight_bytes / self.bytes_per_s + self.allreduce_latency_s,
            beta_prefill=self.flops_per_token / self.flops_per_s + self.allreduce_s_per_token,
            beta_decode=self.per_seq_s + self.allreduce_s_per_token,
            beta_kv=self.kv_bytes_per_token / self.bytes_per_s,
            kv_capacity_tokens=self.kv_capacity_tokens,
        )


def activation_reserve_bytes(model: ModelSpec, instance: Instance, engine: EngineConfig) -> float:
    """Bytes per GPU kept free for activations of the largest batch (vLLM's profiling run):
    hidden states and the MLP's intermediate (split over TP GPUs) for the profiled tokens,
    FP32 logits for one token per sequence, and a fixed slack."""
    tokens = engine.max_num_batched_tokens or PROFILE_TOKENS
    per_token = model.dtype_bytes * (2 * model.hidden + 2 * model.intermediate / instance.count)
    logits = engine.max_num_seqs * model.vocab * 4
    return tokens * per_token + logits + FIXED_RESERVE_BYTES


def kv_capacity_tokens(model: ModelSpec, instance: Instance, engine: EngineConfig,
                       memory_utilization: float = DEFAULT_MEMORY_UTILIZATION) -> int:
    """KV-cache tokens one instance holds; MelangeError when the model does not fit."""
    usable = instance.memory * memory_utilization
    gb = model.weight_bytes / GB
    per_gpu = f"{instance.gpu.memory / GB:.0f} GB × {memory_utilization:g}"
    where = instance.name
    if instance.count > 1:
        per_gpu = f"{instance.count} × {per_gpu}"
    if model.weight_bytes >= usable:
        raise MelangeError(f"{model.name} ({gb:.0f} GB of weights) does not fit on {where} ({per_gpu})")
    free = usable - model.weight_bytes - instance.count * activation_reserve_bytes(model, instance, engine)
    tokens = int(free // model.kv_bytes_per_token)
    # Round down to whole KV blocks, as the engine allocates them.
    tokens -= tokens % engine.block_size if tokens > 0 else 0
    if tokens < engine.block_size:
        raise MelangeError(f"{model.name} ({gb:.0f} GB of weights) leaves no room for a KV cache on "
                           f"{where} ({per_gpu})")
    return tokens


def roofline_model(instance: Instance, model: ModelSpec, engine: EngineConfig | None = None,
                   params: RooflineParams | None = None) -> RooflineModel:
    """The roofline step-time model of `model` served on `instance` with `engine` settings."""
    engine = engine or EngineConfig()
    params = params or RooflineParams()
    n = instance.count
    gpu = instance.gpu
    if n > 1:
        # Two all-reduces per layer of (tokens × hidden) activations; ring: 2(N−1)/N of it per link.
        ring_bytes_per_token = 2 * (n - 1) / n * model.hidden * model.dtype_bytes
        per_token = 2 * model.layers * ring_bytes_per_token / gpu.interconnect_bandwidth
        latency = 2 * model.layers * ALLREDUCE_LATENCY_S[gpu.interconnect]
    else:
        per_token = latency = 0.0
    return RooflineModel(
        name=f"{model.name}@{instance.name}",
        kv_capacity_tokens=kv_capacity_tokens(model, instance, engine, params.memory_utilization),
        overhead_s=params.overhead_s,
        per_seq_s=params.per_seq_s,
        flops_per_s=gpu.flops * n * params.flops_efficiency,
        bytes_per_s=gpu.bandwidth * n * params.bandwidth_efficiency,
        weight_bytes=model.weight_bytes,
        kv_bytes_per_token=model.kv_bytes_per_token,
        flops_per_token=2.0 * model.params,
        attn_dim_layers=float(model.layers * model.heads * model.head_dim),
        allreduce_s_per_token=per_token,
        allreduce_latency_s=latency,
    )
