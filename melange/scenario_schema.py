"""The schema of scenario files (pydantic models): ours, and the seed research code's config.

Only the shape and ranges of each field live here; `melange.scenario` turns a validated document
into the core dataclasses and checks what needs more than one field (shapes against the grid,
profile files against the scenario).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from melange.fields import (
    MAX_INSTANCES,
    Fraction,
    Millis,
    PositiveFloat,
    Rate,
    Seconds,
    StepCoef,
    Table,
    Tokens,
)


class _Strict(BaseModel):
    # strict: a bool is not a number, 1.9 is not an integer, "16" is not a number (units aside)
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True, strict=True)


# --- file schema (ours) -------------------------------------------------------------------

class GridSpec(_Strict):
    input_edges: list[Tokens]
    output_edges: list[Tokens]


class ArrivalSpec(_Strict):
    process: Literal["poisson", "gamma", "trace"] = "poisson"
    cv: PositiveFloat = 1.0
    trace: str | None = None
    scale_to_rate: bool = True


class TraceDistribution(_Strict):
    trace: str


class WorkloadFileDistribution(_Strict):
    file: str  # a workload file (melange scenarios build-workload), or a built-in one by name


class WorkloadSpec(_Strict):
    rate: Rate
    distribution: Table | TraceDistribution | WorkloadFileDistribution | None = None
    arrival: ArrivalSpec = ArrivalSpec()
    lengths: Literal["uniform", "trace"] = "uniform"
    trace: str | None = None


class SloSpec(_Strict):
    tpot_ms: Millis | None = None  # None: no TPOT limit (a batch class: give e2e_ms)
    definition: Literal["mean", "decode", "mean_itl"] = "mean"
    ttft_ms: Millis | None = None
    attainment: Annotated[Fraction, Field(gt=0, le=1)] = 0.99
    e2e_ms: Millis | None = None  # each request's whole latency (batch: 300000 = 5 min)


class EngineSpec(_Strict):
    max_num_seqs: Tokens = 256
    block_size: Tokens = 16
    max_num_batched_tokens: Tokens | None = None
    max_model_len: Tokens | None = None


class LinearStepSpec(_Strict):
    alpha: StepCoef
    beta_prefill: StepCoef
    beta_decode: StepCoef
    beta_kv: StepCoef
    kv_capacity_tokens: Annotated[int, Field(ge=1, le=10**12)]


class GpuSpec(_Strict):
    name: Annotated[str, Field(min_length=1)]
    cost: PositiveFloat | None = None  # default: the catalog entry's price
    gpus: Annotated[int, Field(ge=1)] = 1
    memory_gb: PositiveFloat | None = None
    max_count: Annotated[int, Field(ge=0)] | None = None
    min_count: Annotated[int, Field(ge=0, le=MAX_INSTANCES)] = 0
    utilization: Annotated[Fraction, Field(gt=0, le=1)] | None = None
    profile: Table | str | None = None  # inline max-rate table, or a file holding one
    engine: EngineSpec = EngineSpec()
    step_time: LinearStepSpec | Literal["roofline"] | None = None  # roofline: catalog x model
    catalog: str | None = None  # catalog GPU or instance (e.g. A100-80GB, 4xH100): defaults cost/gpus/memory
    startup_s: Annotated[float, Field(ge=0, le=86400)] | None = None  # boot + model load; default: the catalog's
    # One instance type per degree that can serve the model (perf/instances.py), named
    # '{n}x{name}' ('{name}' for 1); `profile` may say '{gpu}' for the type's name; `cost`, if
    # given, is then per GPU (an instance of n costs n x it).
    tensor_parallel: Annotated[list[Literal[1, 2, 4, 8]], Field(min_length=1)] | None = None


class SolverSpec(_Strict):
    slice_factor: Annotated[int, Field(ge=1)] | Literal["continuous"] = 8
    headroom: Annotated[Fraction, Field(ge=0)] = 0.0
    utilization: Annotated[Fraction, Field(gt=0, le=1)] = 1.0
    time_limit_s: Annotated[Seconds, Field(gt=0)] = 60.0
    backend: Literal["highs", "cbc"] = "highs"


class SimulationSpec(_Strict):
    requests: Annotated[int, Field(ge=1)] | None = None
    duration_s: Annotated[Seconds, Field(gt=0)] | None = None
    warmup_s: Seconds = 0.0
    seed: Annotated[int, Field(ge=0)] = 0
    router: Literal["least_work", "round_robin", "random"] = "least_work"


class ScheduleSpec(_Strict):
    """Load over time and how its fleet may change (`melange schedule`)."""

    load: Annotated[str, Field(min_length=1)]  # a built-in load's name or a load file
    scale: Annotated[float, Field(gt=0, le=1e6)] = 1.0  # rates x this (bursts in proportion)
    first_window: Annotated[int, Field(ge=0)] = 0
    windows: Annotated[int, Field(ge=1)] | None = None  # how many; None = to the load's end
    period_windows: Annotated[int, Field(ge=1)] | None = None  # a forecast's period; None = a day's
    history: Annotated[int, Field(ge=1, le=365)] = 1  # periods a day-ahead forecast looks back
    min_up_windows: Annotated[int, Field(ge=1)] = 1
    max_changes_per_hour: Annotated[int, Field(ge=0)] | None = None
    drain_s: Annotated[Seconds, Field(ge=0)] = 60.0
    # Instances of a type one may hold (serving or starting): one cap, or one per window planned.
    availability: dict[str, Annotated[int, Field(ge=0)] | list[Annotated[int, Field(ge=0)]]] = {}


class ScenarioSpec(_Strict):
    name: str = "scenario"
    description: str = ""
    model: str | None = None  # catalog model served (needed by step_time: roofline)
    engine_preset: str | None = None  # CPU overheads of the roofline (catalog engines.yaml); None = default
    grid: Literal["paper"] | GridSpec = "paper"
    workload: WorkloadSpec
    slo: SloSpec | None = None
    gpus: Annotated[list[GpuSpec], Field(min_length=1)]
    solver: SolverSpec = SolverSpec()
    simulation: SimulationSpec = SimulationSpec()
    schedule: ScheduleSpec | None = None

    @field_validator("gpus")
    @classmethod
    def _unique_names(cls, gpus: list[GpuSpec]) -> list[GpuSpec]:
        names = [g.name for g in gpus]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"duplicate GPU name {dup[0]!r}")
        return gpus


# --- file schema (the seed research code's config) ----------------------------------------

class SeedGpu(_Strict):
    cost: PositiveFloat
    tputs: Table


class SeedSpec(_Strict):
    gpu_info: Annotated[dict[str, SeedGpu], Field(min_length=1)]
    workload_distribution: Table
    total_request_rate: Rate
    slice_factor: Annotated[int, Field(ge=1)] = 1
