"""Step times from hardware specs: a roofline model of one engine iteration.

One iteration (vLLM-style continuous batching) prefills some prompt tokens and decodes one token
for each running sequence. Its time is

    t = overhead + per_seq · decode_seqs + [step prefills] · (prefill_overhead + layers · layer_floor)
        + max(C, M) + overlap · min(C, M) + allreduce

- C, compute time: FLOPs / (peak dense FLOP/s × flops_efficiency). FLOPs are 2·params per token
  (prefill and decode tokens alike), plus causal prefill attention 2·layers·d·P² and decode
  attention 4·layers·d·context (d = heads × head_dim). P² treats the step's prompts as one: it
  overestimates when several short prompts share a step, which only matters for long prompts.
- M, memory time: bytes / (bandwidth × bandwidth_efficiency). Every step reads all weights once,
  reads the KV cache of every decoding sequence (context × KV bytes per token) and writes the
  KV of the prefilled tokens.
- overlap: compute and memory traffic do not hide each other perfectly. Near the knee (C ≈ M:
  128-512 tokens in a step on A100/H100) a layer's GEMMs are neither bandwidth- nor compute-
  saturated; Vidur's kernel tables show those steps up to 1.5× slower than max(C, M). The term
  overlap · min(C, M) vanishes far from the knee and is largest at it.
- layer_floor: per-layer GPU time no batch size removes in an eagerly run step (about nine
  kernels a layer, each a few µs of launch and tail latency); it is what makes small tensor-
  parallel shards slower than their bytes and FLOPs say. vLLM replays pure-decode steps as CUDA
  graphs, which launch the kernels back to back: only steps that prefill pay it.
- allreduce (tensor parallel, N > 1 GPUs): Megatron-style layers all-reduce their output
  twice per layer (after attention and after the MLP); a ring all-reduce of B bytes moves
  2(N−1)/N · B over each link at 70 % of the link's bandwidth, plus 25 µs per call. Vidur's H100
  NVLink all-reduce table measured 21–38 µs per small call and 274–365 GB/s of bus bandwidth
  against NVLink 4's 450 GB/s per direction (it was 10 µs and the datasheet figure before).
  PCIe has no public table here: it gets the same latency, a floor. Past an NVLink domain (PCIe
  cards' bridges join pairs: `nvlink_gpus` in the catalog) the ring crosses PCIe Gen4. Not
  overlapped with compute.

flops_efficiency and bandwidth_efficiency are fitted per GPU family, overlap and layer_floor for
all, by `scripts/calibrate.py` to public kernel measurements (Vidur's A100, H100 and A40 tables,
melange/scenarios/measurements/) and written to catalog/calibration.yaml with each family's
uncertainty band; a family without measurements gets 0.6 and 0.8 and a wide band.
overhead_s, per_seq_s and prefill_overhead_s are the CPU side of an iteration (scheduler, input
preparation, sampler, detokenisation), from a named *engine preset* (catalog/engines.yaml and
the fitted ones in catalog/calibration.yaml, each with the measurements it rests on). `scale`
multiplies the whole step: the sensitivity analysis runs a plan at both ends of the band.

KV capacity follows vLLM's own arithmetic (see `kv_blocks`).
"""

from __future__ import annotations

from dataclasses import dataclass

from melange.core import EngineConfig, LinearStepModel, MelangeError
from melange.perf.catalog import GIB, Catalog, EnginePreset, Instance, ModelSpec, load_catalog

DEFAULT_MEMORY_UTILIZATION = 0.9  # vLLM's gpu_memory_utilization default
# Memory outside PyTorch's allocator that vLLM subtracts (NCCL, cuBLAS workspaces): its logs show
# 0.05-0.35 GiB per GPU on one-GPU 7-8B servers (vllm#10517, OCI's A10 log); CUDA graphs are
# captured after the KV cache is sized and come out of the 1 - gpu_memory_utilization headroom.
NON_TORCH_BYTES = 0.2 * GIB
ALLREDUCE_LATENCY_S = 25e-6  # per call: Vidur's H100 all-reduce table, 21-38 µs for small messages
ALLREDUCE_BUS_EFFICIENCY = 0.7  # the same table: 274-365 GB/s of bus bandwidth on 450 GB/s links


@dataclass(frozen=True)
class RooflineParams:
    """Efficiency factors and overheads of the roofline (see the module docstring for why).
    None = the catalog's: efficiencies from the GPU family's fit, overheads from the engine
    preset (None: the catalog's default preset)."""

    flops_efficiency: float | None = None
    bandwidth_efficiency: float | None = None
    overhead_s: float | None = None
    per_seq_s: float | None = None
    memory_utilization: float = DEFAULT_MEMORY_UTILIZATION
    preset: str | None = None  # engine preset in the catalog; None = its default
    scale: float = 1.0  # multiplies every step time (sensitivity: the ends of the band)

    def __post_init__(self) -> None:
        for name in ("flops_efficiency", "bandwidth_efficiency", "memory_utilization"):
            value = getattr(self, name)
            if value is not None and not 0 < value <= 1:
                raise MelangeError(f"roofline.{name}: must be in (0, 1], got {value}")
        if (self.overhead_s or 0) < 0 or (self.per_seq_s or 0) < 0:
            raise MelangeError("roofline overheads must be >= 0")
        if not 0 < self.scale < 10:
            raise MelangeError(f"roofline.scale: must be in (0, 10), got {self.scale}")

    def engine_preset(self, catalog: Catalog | None = None) -> EnginePreset:
        """The engine preset these parameters name (the catalog's default if none)."""
        return (catalog or load_catalog()).engine(self.preset)

    def overheads(self, catalog: Catalog | None = None) -> tuple[float, float]:
        """(overhead_s, per_seq_s): the ones given here, else the engine preset's."""
        if self.overhead_s is not None and self.per_seq_s is not None:
            return self.overhead_s, self.per_seq_s
        preset = self.engine_preset(catalog)
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
    prefill_overhead_s: float = 0.0  # extra CPU time of a step that prefills
    floor_s: float = 0.0  # layers × per-layer kernel floor
    overlap: float = 0.0  # share of min(compute, memory) not hidden
    scale: float = 1.0  # multiplies the whole step (sensitivity)
    uncertainty: float = 0.0  # relative 1-sigma band of the step times (calibration fit)

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

    def gpu_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int,
                 eager: bool = True) -> float:
        """Seconds the GPU works on the step (no CPU overheads, no all-reduce, unscaled); an
        eager step pays the per-layer kernel floor, a CUDA-graph replay does not."""
        c = self.compute_time(prefill_tokens, decode_seqs, context_tokens)
        m = self.memory_time(prefill_tokens, decode_seqs, context_tokens)
        return (self.floor_s if eager else 0.0) + max(c, m) + self.overlap * min(c, m)

    def step_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Seconds for one engine iteration."""
        if prefill_tokens == 0 and decode_seqs == 0:
            return 0.0
        cpu = self.overhead_s + self.per_seq_s * decode_seqs
        if prefill_tokens:
            cpu += self.prefill_overhead_s
        # vLLM replays pure-decode steps as CUDA graphs; steps that prefill run eagerly.
        gpu = self.gpu_time(prefill_tokens, decode_seqs, context_tokens, eager=prefill_tokens > 0)
        return self.scale * (cpu + gpu + self.allreduce_time(prefill_tokens, decode_seqs))

    def decode_lines(self, n: int, context: int) -> tuple[tuple[float, float], ...]:
        """Step s of a pure-decode run of n sequences from `context` KV tokens takes
        max over the lines (a, b) of a + b·s seconds (the context grows by n per step, compute
        and memory time are linear in it, and max(C, M) + k·min(C, M) = max(C + kM, M + kC) for
        k <= 1): the simulator sums a run in closed form."""
        fixed = self.overhead_s + self.per_seq_s * n + self.allreduce_time(0, n)  # graphs: no floor
        c = ((self.flops_per_token * n + 4.0 * self.attn_dim_layers * context) / self.flops_per_s,
             4.0 * self.attn_dim_layers * n / self.flops_per_s)
        m = ((self.weight_bytes + self.kv_bytes_per_token * context) / self.bytes_per_s,
             self.kv_bytes_per_token * n / self.bytes_per_s)
        k, x = self.overlap, self.scale
        return tuple((x * (fixed + a[0] + k * b[0]), x * (a[1] + k * b[1])) for a, b in ((c, m), (m, c)))

    def linearized(self) -> LinearStepModel:
        """The linear model closest to this one in its usual regime: decode memory bound
        (weights + KV reads), prefill compute bound; drops the max() and prefill attention."""
        x, k = self.scale, self.overlap
        return LinearStepModel(
            alpha=x * (self.overhead_s + self.weight_bytes / self.bytes_per_s + self.allreduce_latency_s),
            beta_prefill=x * (self.flops_per_token / self.flops_per_s + self.allreduce_s_per_token
                              + k * self.kv_bytes_per_token / self.bytes_per_s),
            beta_decode=x * (self.per_seq_s + self.allreduce_s_per_token
                             + k * self.flops_per_token / self.flops_per_s),
            beta_kv=x * self.kv_bytes_per_token / self.bytes_per_s,
            kv_capacity_tokens=self.kv_capacity_tokens,
        )


def profile_tokens(model: ModelSpec, engine: EngineConfig) -> int:
    """Tokens of vLLM's memory-profiling forward pass: the chunked-prefill budget, else vLLM
    v0's default token budget (max_model_len defaulting to the model's context)."""
    return engine.max_num_batched_tokens or engine.v0_token_budget(model.max_context)


def activation_peak_bytes(model: ModelSpec, instance: Instance, engine: EngineConfig) -> float:
    """Peak PyTorch memory per GPU of vLLM's profiling run beyond the weights: the larger of the
    forward pass over `profile_tokens` (MLP gate/up output, the activation's output and a few
    hidden-size buffers per token) and the sampler's FP32 logits and probabilities for
    max_num_seqs sequences. ~115 KB a token for Llama-3-8B: vLLM logged 0.22 GiB at 2,048 tokens
    (OCI's A10 log) and 2.07 GiB at 20,000 (vllm#10517)."""
    per_token = model.dtype_bytes * (3 * model.intermediate / instance.count + 4 * model.hidden)
    sampler = engine.max_num_seqs * model.vocab * 4 * 2
    return max(profile_tokens(model, engine) * per_token, sampler)


def kv_blocks(total_bytes: float, memory_utilization: float, weight_bytes: float,
              activation_bytes: float, non_torch_bytes: float, block_bytes: float) -> int:
    """KV blocks one GPU gets, as vLLM sizes them: requested = total × gpu_memory_utilization,
    available = requested − (weights + activation peak + non-torch memory), blocks =
    available // bytes per block. The lines followed (PyPI wheels):
    - v0.6.6.post1 vllm/worker/worker.py L177-248 `determine_num_available_blocks` (available
      = total × util − (weights + torch peak increase + non-torch increase); the same since
      v0.6.5), with vllm/worker/cache_engine.py L101 `get_cache_block_size` (block_size ×
      num_kv_heads × head_size × num_layers × 2 × dtype bytes);
    - v0.10.1 vllm/v1/worker/gpu_worker.py L222-280 `determine_available_memory` (requested
      memory − non-KV memory) and vllm/v1/core/kv_cache_utils.py L777-797 `get_num_blocks`
      (int(available // page_size // num_layers): the same integer).
    CUDA graphs are captured after the cache is sized: they come out of the 1 − util headroom."""
    available = total_bytes * memory_utilization - (weight_bytes + activation_bytes + non_torch_bytes)
    return max(int(available // block_bytes), 0)


def kv_capacity_tokens(model: ModelSpec, instance: Instance, engine: EngineConfig,
                       memory_utilization: float = DEFAULT_MEMORY_UTILIZATION) -> int:
    """KV-cache tokens one instance holds (vLLM's arithmetic on each GPU, see `kv_blocks`);
    MelangeError when the model does not fit."""
    n, gpu = instance.count, instance.gpu
    per_gpu = f"{gpu.memory / 1e9:.0f} GB × {memory_utilization:g}"
    if n > 1:
        per_gpu = f"{n} × {per_gpu}"
    gb = model.weight_bytes / 1e9
    weights = model.weight_bytes / n
    if weights >= gpu.usable_memory * memory_utilization:
        raise MelangeError(f"{model.name} ({gb:.0f} GB of weights) does not fit on {instance.name} ({per_gpu})")
    # Each GPU holds its share of the KV heads (replicated when there are fewer heads than GPUs).
    kv_heads = max(1, model.kv_heads // n)
    block_bytes = engine.block_size * 2 * model.layers * kv_heads * model.head_dim * model.dtype_bytes
    blocks = kv_blocks(gpu.usable_memory, memory_utilization, weights,
                       activation_peak_bytes(model, instance, engine), NON_TORCH_BYTES, block_bytes)
    if blocks < 1:
        raise MelangeError(f"{model.name} ({gb:.0f} GB of weights) leaves no room for a KV cache on "
                           f"{instance.name} ({per_gpu})")
    return blocks * engine.block_size


def roofline_model(instance: Instance, model: ModelSpec, engine: EngineConfig | None = None,
                   params: RooflineParams | None = None, catalog: Catalog | None = None) -> RooflineModel:
    """The roofline step-time model of `model` served on `instance` with `engine` settings;
    efficiencies from `params` or the GPU family's calibration, CPU overheads from `params` or
    its engine preset in `catalog` (default: the built-in one)."""
    engine = engine or EngineConfig()
    params = params or RooflineParams()
    catalog = catalog or load_catalog()
    overhead_s, per_seq_s = params.overheads(catalog)
    preset = params.engine_preset(catalog)
    n = instance.count
    gpu = instance.gpu
    fit = catalog.calibration.fit(gpu)
    if n > 1:
        # Two all-reduces per layer of (tokens × hidden) activations; ring: 2(N−1)/N of it per link.
        ring_bytes_per_token = 2 * (n - 1) / n * model.hidden * model.dtype_bytes
        _, link_bytes_s = gpu.link(n)
        per_token = 2 * model.layers * ring_bytes_per_token / (link_bytes_s * ALLREDUCE_BUS_EFFICIENCY)
        latency = 2 * model.layers * ALLREDUCE_LATENCY_S
    else:
        per_token = latency = 0.0
    return RooflineModel(
        name=f"{model.name}@{instance.name}",
        kv_capacity_tokens=kv_capacity_tokens(model, instance, engine, params.memory_utilization),
        overhead_s=overhead_s,
        per_seq_s=per_seq_s,
        flops_per_s=gpu.flops * n * (params.flops_efficiency or fit.flops_efficiency),
        bytes_per_s=gpu.bandwidth * n * (params.bandwidth_efficiency or fit.bandwidth_efficiency),
        weight_bytes=model.weight_bytes,
        kv_bytes_per_token=model.kv_bytes_per_token,
        flops_per_token=2.0 * model.params,
        attn_dim_layers=float(model.layers * model.heads * model.head_dim),
        allreduce_s_per_token=per_token,
        allreduce_latency_s=latency,
        prefill_overhead_s=preset.prefill_overhead_s,
        floor_s=model.layers * catalog.calibration.layer_floor_s,
        overlap=catalog.calibration.overlap,
        scale=params.scale,
        uncertainty=step_uncertainty(instance, params, catalog),
    )


def step_uncertainty(instance: Instance, params: RooflineParams | None = None,
                     catalog: Catalog | None = None) -> float:
    """Relative 1-sigma band of this instance's step times: the GPU family's fit and the engine
    preset's, combined as independent errors."""
    catalog = catalog or load_catalog()
    g = catalog.calibration.fit(instance.gpu).uncertainty
    e = (params or RooflineParams()).engine_preset(catalog).uncertainty
    return (g * g + e * e) ** 0.5
