"""Plain data shared by every part of Mélange.

Units everywhere: seconds, tokens, requests per second (req/s), dollars per hour ($/h).
Nothing here solves, simulates or reads files; the other sub-packages do, and import this.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np

from melange.errors import MelangeError  # noqa: F401  (re-exported; its module keeps the CLI light)

PAPER_INPUT_EDGES = (1, 25, 100, 250, 500, 1000, 2000, 4000, 8000, 12000, 16000)
PAPER_OUTPUT_EDGES = (1, 25, 100, 250, 500, 1000, 2000)


@dataclass(frozen=True)
class BucketGrid:
    """Request-size buckets: bucket (i, j) holds input in [in_edges[i], in_edges[i+1]) tokens
    and output in [out_edges[j], out_edges[j+1]) tokens."""

    in_edges: tuple[int, ...]
    out_edges: tuple[int, ...]
    indexed: bool = False  # edges unknown (e.g. the seed's config): buckets are named by index

    def __post_init__(self) -> None:
        for name, edges in (("in_edges", self.in_edges), ("out_edges", self.out_edges)):
            if len(edges) < 2:
                raise MelangeError(f"grid.{name}: needs at least 2 edges, got {len(edges)}")
            if any(b <= a for a, b in zip(edges, edges[1:])):
                raise MelangeError(f"grid.{name}: edges must be strictly increasing")
            if edges[0] < 1:
                raise MelangeError(f"grid.{name}: edges must be >= 1 token")

    @classmethod
    def paper(cls) -> BucketGrid:
        """The Mélange paper's 10 x 6 grid."""
        return cls(PAPER_INPUT_EDGES, PAPER_OUTPUT_EDGES)

    @property
    def shape(self) -> tuple[int, int]:
        """(number of input buckets, number of output buckets)."""
        return (len(self.in_edges) - 1, len(self.out_edges) - 1)

    def bucket_of(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bucket indices (i, j) of each request; -1 where a length falls outside the grid."""
        i = np.searchsorted(self.in_edges, input_tokens, side="right") - 1
        j = np.searchsorted(self.out_edges, output_tokens, side="right") - 1
        i = np.where((i < 0) | (i >= self.shape[0]), -1, i)
        j = np.where((j < 0) | (j >= self.shape[1]), -1, j)
        return i, j

    def histogram(self, input_tokens: np.ndarray, output_tokens: np.ndarray) -> np.ndarray:
        """Share of requests per bucket (sums to 1 over the requests inside the grid)."""
        i, j = self.bucket_of(np.asarray(input_tokens), np.asarray(output_tokens))
        inside = (i >= 0) & (j >= 0)
        if not inside.any():
            raise MelangeError("workload: no request falls inside the bucket grid")
        counts = np.zeros(self.shape)
        np.add.at(counts, (i[inside], j[inside]), 1)
        return counts / counts.sum()

    def label(self, i: int, j: int) -> str:
        """Human-readable bucket name, e.g. 'in 25-100 / out 1-25'."""
        if self.indexed:
            return f"bucket ({i}, {j})"
        return (f"in {self.in_edges[i]}-{self.in_edges[i + 1]} / "
                f"out {self.out_edges[j]}-{self.out_edges[j + 1]}")


@dataclass(frozen=True)
class Arrival:
    """Arrival process: Poisson, gamma inter-arrivals with coefficient of variation `cv`, replay
    of a trace's timestamps (optionally time-scaled to the workload rate), or `streams`: several
    independent gamma streams superposed, each (share of the rate, cv) (clients of a service)."""

    process: Literal["poisson", "gamma", "trace", "streams"] = "poisson"
    cv: float = 1.0
    trace: str | None = None
    scale_to_rate: bool = True
    streams: tuple[tuple[float, float], ...] = ()  # (share of the rate, cv) per stream


@dataclass(frozen=True)
class Workload:
    """Traffic to serve: `rate` req/s spread over the grid's buckets by `distribution`."""

    grid: BucketGrid
    distribution: np.ndarray  # shape grid.shape, sums to 1
    rate: float  # req/s
    arrival: Arrival = field(default_factory=Arrival)
    lengths: Literal["uniform", "trace"] = "uniform"  # how exact lengths are drawn in a bucket
    trace: str | None = None  # trace file for empirical lengths / replay

    def bucket_rates(self) -> np.ndarray:
        """Request rate per bucket (req/s)."""
        return self.distribution * self.rate


@dataclass(frozen=True)
class Slo:
    """Latency limits and the share of requests that must meet them.

    `definition`: `decode` (vLLM's TPOT per request, after the first token; needs `ttft_ms`),
    `mean` (per request: e2e / output tokens) or `mean_itl` (the Mélange paper's rule: the mean gap
    between tokens after the first, over every counted request's tokens, at most `tpot_ms`, and,
    given `ttft_ms`, the mean TTFT at most that; `attainment` is then the share of requests
    that must complete). `e2e_ms` bounds each request's whole latency (a batch class: e2e ≤ 5 min);
    `tpot_ms` None means no TPOT limit (then `e2e_ms` is required)."""

    tpot_ms: float | None
    definition: Literal["mean", "decode", "mean_itl"] = "mean"
    ttft_ms: float | None = None
    attainment: float = 0.99
    e2e_ms: float | None = None

    @property
    def per_request(self) -> bool:
        """Whether each request is judged against the limits (False: averages are, `mean_itl`)."""
        return self.definition != "mean_itl"

    def __post_init__(self) -> None:
        if self.tpot_ms is None and (self.e2e_ms is None or self.definition == "mean_itl"):
            raise MelangeError("slo.tpot_ms: required (a batch class without one needs e2e_ms, per request)")
        if self.e2e_ms is not None and not self.per_request:
            raise MelangeError("slo.e2e_ms: judged per request; 'mean_itl' judges averages")
        # vLLM's decode TPOT starts at the first token: queueing and prefill are outside it, so
        # without a TTFT limit an overloaded GPU (a queue growing for minutes) would still meet it.
        if self.definition == "decode" and self.ttft_ms is None and self.e2e_ms is None:
            raise MelangeError("slo.ttft_ms: required with definition 'decode' (decode TPOT leaves out "
                               "queueing and prefill; without a TTFT limit an overloaded GPU still meets it)")


@dataclass(frozen=True)
class GpuType:
    """A rentable instance type (one or more GPUs serving one model replica)."""

    name: str
    cost: float  # $/h for the whole instance
    gpus: int = 1  # GPUs per instance (tensor parallel)
    memory_gb: float | None = None  # per GPU
    max_count: int | None = None  # availability cap
    min_count: int = 0
    utilization: float | None = None  # plan at most this share of profiled max rate; None = solver default
    startup_s: float | None = None  # s from asking for an instance to its serving (schedules); None = default


@dataclass(frozen=True)
class Profile:
    """Highest req/s one instance of `gpu` sustains per bucket while meeting the SLO.
    A cell of 0 means this GPU type cannot serve that bucket."""

    gpu: str
    max_rate: np.ndarray  # shape grid.shape, req/s
    source: str = "given"  # given | measured | simulated
    unmeasured: tuple[tuple[int, int], ...] = ()  # cells never measured (their 0 is not "cannot serve")


@dataclass
class Plan:
    """A GPU allocation: instance counts and, per bucket, the share of its traffic per type."""

    counts: dict[str, int]
    share: dict[str, np.ndarray]  # gpu -> shape grid.shape; shares sum to 1 per non-empty bucket
    cost: float  # $/h
    status: str = "optimal"
    bound: float | None = None  # best lower bound on cost found by the solver
    gap: float | None = None  # relative (cost - bound) / cost
    solve_time_s: float | None = None
    slice_factor: int | str | None = None

    def to_dict(self) -> dict:
        """JSON-ready form (arrays as nested lists)."""
        return {
            "counts": dict(self.counts),
            "cost": self.cost,
            "status": self.status,
            "bound": self.bound,
            "gap": self.gap,
            "solve_time_s": self.solve_time_s,
            "slice_factor": self.slice_factor,
            "share": {g: np.asarray(s).round(12).tolist() for g, s in self.share.items()},
        }

    @classmethod
    def from_dict(cls, d: dict) -> Plan:
        """Inverse of to_dict."""
        return cls(
            counts={g: _count(g, n) for g, n in d["counts"].items()},
            share={g: np.asarray(s, dtype=float) for g, s in d["share"].items()},
            cost=float(d["cost"]),
            status=d.get("status", "optimal"),
            bound=d.get("bound"),
            gap=d.get("gap"),
            solve_time_s=d.get("solve_time_s"),
            slice_factor=d.get("slice_factor"),
        )


def _count(gpu: str, n) -> int:
    """An instance count from a file: a whole number (1.9 instances is a mistake, not 1)."""
    whole = isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n) and n == int(n)
    if not whole or n < 0:
        raise MelangeError(f"plan.counts.{gpu}: must be a whole number >= 0, got {n!r}")
    return int(n)


class StepTimeModel(Protocol):
    """The one seam for GPU cost models: time of one engine iteration, and KV capacity."""

    kv_capacity_tokens: int

    def step_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Seconds for one iteration that prefills `prefill_tokens`, decodes one token for each
        of `decode_seqs` sequences and reads `context_tokens` tokens of KV cache."""
        ...

    # Optional: `decode_lines(n, context) -> ((a, b), ...)` saying that step s of a pure-decode
    # run of n sequences from `context` KV tokens takes max over the lines of a + b·s seconds.
    # The simulator then sums runs in closed form; without it, step by step via step_time.


@dataclass(frozen=True)
class LinearStepModel:
    """t = alpha + beta_prefill·prefill + beta_decode·decode_seqs + beta_kv·context (seconds)."""

    alpha: float
    beta_prefill: float
    beta_decode: float
    beta_kv: float
    kv_capacity_tokens: int

    def step_time(self, prefill_tokens: int, decode_seqs: int, context_tokens: int) -> float:
        """Seconds for one engine iteration."""
        return (self.alpha + self.beta_prefill * prefill_tokens
                + self.beta_decode * decode_seqs + self.beta_kv * context_tokens)

    def decode_lines(self, n: int, context: int) -> tuple[tuple[float, float]]:
        """Step s of a pure-decode run takes a + b·s: one line (see StepTimeModel)."""
        return ((self.step_time(0, n, context), self.beta_kv * n),)


@dataclass(frozen=True)
class EngineConfig:
    """vLLM-style scheduler settings of one instance."""

    max_num_seqs: int = 256
    block_size: int = 16  # KV-cache block, tokens
    max_num_batched_tokens: int | None = None  # chunked-prefill token budget per step; None = off
    max_model_len: int | None = None  # longest input + output accepted; None = KV capacity

    def v0_token_budget(self, default_len: int) -> int:
        """Prompt tokens one step takes without chunked prefill: vLLM v0's max_num_batched_tokens
        default, max(max_model_len, 2048) (vllm/config.py, SchedulerConfig.__post_init__: "If
        max_model_len is too short, use 2048 as the default value for higher throughput");
        `default_len` stands in for an unset max_model_len. The engine caps a step's prompts at it
        and vLLM's memory profiling runs a batch of it."""
        return max(self.max_model_len or default_len, 2048)

    def __post_init__(self) -> None:
        for name in ("max_num_seqs", "block_size", "max_num_batched_tokens", "max_model_len"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise MelangeError(f"engine.{name}: must be a whole number >= 1, got {value!r}")


@dataclass(frozen=True)
class SolveOptions:
    """How the optimizer cuts and sizes the problem."""

    slice_factor: int | Literal["continuous"] = 8  # slices per bucket; "continuous" = the limit
    headroom: float = 0.0  # over-provisioning: serve rate x (1 + headroom)
    utilization: float = 1.0  # default per-type ceiling on planned load / profiled max rate
    time_limit_s: float = 60.0
    backend: Literal["highs", "cbc"] = "highs"
    utilization_override: bool = False  # True: `utilization` replaces every per-type ceiling (--utilization)
