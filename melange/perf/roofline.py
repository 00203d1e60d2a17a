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
- overhead_s, per_seq_s: the CPU side of an iteration (scheduler, input preparation, sampler,
  block tables, detokenisation), which the GPU waits for. They come from a named *engine preset*
  in the catalog (catalog/engines.yaml, with the measurements each is calibrated to): `vllm-0.2`,
  the vLLM the Mélange paper measured (4 ms + 150 µs per sequence: at 256 sequences ~70 % of an
  A100 step is CPU time, which narrows the gap between fast and slow GPUs, the reason cheap GPUs
  win small requests in the paper), and `vllm-0.23`, today's vLLM and the default (1 ms + 20 µs).
  For your own engine, fit the step model to measurements (melange.perf.fit).
- allreduce latency: ~10 µs per NVLink all-reduce, ~25 µs over PCIe (NCCL small-message latency).

KV capacity follows vLLM: memory × gpu_memory_utilization − weights − activation reserve, divided
by the KV bytes per token, summed over the instance's GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from melange.core import EngineConfig, LinearStepModel, MelangeError
from melange.perf.catalog import GB, Catalog, Instance, ModelSpec, load_catalog

DEFAULT_MEMORY_UTILIZATION = 0.9  # vLLM's gpu_memory_utilization default
PROFILE_TOKENS = 4096  # tokens of vLLM's activation-profiling batch without chunked prefill
FIXED_RESERVE_BYTES = 0.5 * GB  # per GPU: CUDA graphs, NCCL buffers, allocator slack
ALLREDUCE_LATENCY_S = {"nvlink": 10e-6, "pcie": 25e-6}


@dataclass(frozen=True)
class RooflineParams:
    """Efficiency factors and overheads of the roofline (see the module docstring for why).
    The overheads are the engine preset's (None: the catalog's default) unless given here."""

    flops_efficiency: float = 0.6
    bandwidth_efficiency: float = 0.8
    overhead_s: float | None = None
    per_seq_s: float | None = None
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION
    preset: str | None = None  # engine preset in the catalog; None = its default

    def __post_init__(self) -> None:
        for name in ("flops_efficiency", "bandwidth_efficiency", "memory_utilization"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise MelangeError(f"roofline.{name}: must be in (0, 1], got {value}")
        if (self.overhead_s or 0) < 0 or (self.per_seq_s or 0) < 0:
            raise MelangeError("roofline overheads must be >= 0")

    def overheads(self, catalog: Catalog | None = None) -> tuple[float, float]:
        """(overhead_s, per_seq_s): the ones given here, else the engine preset's."""
        if self.overhead_s is not None and self.per_seq_s is not None:
            return self.overhead_s, self.per_seq_s
        preset = (catalog or load_catalog()).engine(self.preset)
        return (preset.overhead_s if self.overhead_s is None else self.overhead_s,
                preset.per_seq_s if self.per_seq_s is None else self.per_seq_s)


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

    def decode_lines(self, n: int, context: int) -> tuple[tuple[float, float], ...]:
        """Step s of a pure-decode run of n sequences from `context` KV tokens takes
        max over the lines (a, b) of a + b·s seconds (the context grows by n per step, and both
        compute and memory time are linear in it): the simulator sums a run in closed form."""
        fixed = self.overhead_s + self.per_seq_s * n + self.allreduce_time(0, n)
        compute = ((self.flops_per_token * n + 4.0 * self.attn_dim_layers * context) / self.flops_per_s,
                   4.0 * self.attn_dim_layers * n / self.flops_per_s)
        memory = ((self.weight_bytes + self.kv_bytes_per_token * context) / self.bytes_per_s,
                  self.kv_bytes_per_token * n / self.bytes_per_s)
        return ((fixed + compute[0], compute[1]), (fixed + memory[0], memory[1]))

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
                   params: RooflineParams | None = None, catalog: Catalog | None = None) -> RooflineModel:
    """The roofline step-time model of `model` served on `instance` with `engine` settings;
    CPU overheads from `params` or its engine preset in `catalog` (default: the built-in one)."""
    engine = engine or EngineConfig()
    params = params or RooflineParams()
    overhead_s, per_seq_s = params.overheads(catalog)
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
        overhead_s=overhead_s,
        per_seq_s=per_seq_s,
        flops_per_s=gpu.flops * n * params.flops_efficiency,
        bytes_per_s=gpu.bandwidth * n * params.bandwidth_efficiency,
        weight_bytes=model.weight_bytes,
        kv_bytes_per_token=model.kv_bytes_per_token,
        flops_per_token=2.0 * model.params,
        attn_dim_layers=float(model.layers * model.heads * model.head_dim),
        allreduce_s_per_token=per_token,
        allreduce_latency_s=latency,
    )
