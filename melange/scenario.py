"""Scenario files (YAML or JSON): validated with pydantic, turned into the core dataclasses.

Two formats load:
- ours (see `melange/scenarios/default.yaml` for every key), and
- the seed research code's config (`gpu_info`, `workload_distribution`, `total_request_rate`,
  `slice_factor`), unchanged.
Every problem becomes one `MelangeError` line naming the field, e.g.
`scenario.yaml: gpus[1].cost: must be > 0`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from melange.core import (
    Arrival,
    BucketGrid,
    EngineConfig,
    GpuType,
    LinearStepModel,
    MelangeError,
    Profile,
    Slo,
    SolveOptions,
    StepTimeModel,
    Workload,
)
from melange.traces import load_trace, resolve_trace_path

BUILTIN_SCENARIOS = Path(__file__).parent / "scenarios"
DEFAULT_SCENARIO = BUILTIN_SCENARIOS / "default.yaml"
SUM_TOLERANCE = 1e-3  # a distribution may be off by rounding; larger errors need --normalize

PositiveFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]
Table = list[list[NonNegFloat]]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


# --- file schema (ours) -------------------------------------------------------------------

class GridSpec(_Strict):
    input_edges: list[Annotated[int, Field(ge=1)]]
    output_edges: list[Annotated[int, Field(ge=1)]]


class ArrivalSpec(_Strict):
    process: Literal["poisson", "gamma", "trace"] = "poisson"
    cv: PositiveFloat = 1.0
    trace: str | None = None
    scale_to_rate: bool = True


class TraceDistribution(_Strict):
    trace: str


class WorkloadSpec(_Strict):
    rate: PositiveFloat
    distribution: Table | TraceDistribution | None = None
    arrival: ArrivalSpec = ArrivalSpec()
    lengths: Literal["uniform", "trace"] = "uniform"
    trace: str | None = None


class SloSpec(_Strict):
    tpot_ms: PositiveFloat
    definition: Literal["mean", "decode"] = "mean"
    ttft_ms: PositiveFloat | None = None
    attainment: Annotated[float, Field(gt=0, le=1)] = 0.99


class EngineSpec(_Strict):
    max_num_seqs: Annotated[int, Field(ge=1)] = 256
    block_size: Annotated[int, Field(ge=1)] = 16
    max_num_batched_tokens: Annotated[int, Field(ge=1)] | None = None
    max_model_len: Annotated[int, Field(ge=1)] | None = None


class LinearStepSpec(_Strict):
    alpha: NonNegFloat
    beta_prefill: NonNegFloat
    beta_decode: NonNegFloat
    beta_kv: NonNegFloat
    kv_capacity_tokens: Annotated[int, Field(ge=1)]


class GpuSpec(_Strict):
    name: Annotated[str, Field(min_length=1)]
    cost: PositiveFloat | None = None  # default: the catalog entry's price
    gpus: Annotated[int, Field(ge=1)] = 1
    memory_gb: PositiveFloat | None = None
    max_count: Annotated[int, Field(ge=0)] | None = None
    min_count: Annotated[int, Field(ge=0)] = 0
    utilization: Annotated[float, Field(gt=0, le=1)] | None = None
    profile: Table | str | None = None  # inline max-rate table, or a file holding one
    engine: EngineSpec = EngineSpec()
    step_time: LinearStepSpec | Literal["roofline"] | None = None  # roofline: catalog x model
    catalog: str | None = None  # catalog GPU or instance (e.g. A100-80GB, 4xH100): defaults cost/gpus/memory


class SolverSpec(_Strict):
    slice_factor: Annotated[int, Field(ge=1)] | Literal["continuous"] = 8
    headroom: NonNegFloat = 0.0
    utilization: Annotated[float, Field(gt=0, le=1)] = 1.0
    time_limit_s: PositiveFloat = 60.0
    backend: Literal["highs", "cbc"] = "highs"


class SimulationSpec(_Strict):
    requests: Annotated[int, Field(ge=1)] | None = None
    duration_s: PositiveFloat | None = None
    warmup_s: NonNegFloat = 0.0
    seed: int = 0
    router: Literal["least_work", "round_robin", "random"] = "least_work"


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
    total_request_rate: PositiveFloat
    slice_factor: Annotated[int, Field(ge=1)] = 1


# --- loaded scenario ----------------------------------------------------------------------

@dataclass
class Scenario:
    """Everything one study needs, as core dataclasses."""

    name: str
    workload: Workload
    gpus: list[GpuType]
    profiles: dict[str, Profile]
    solve: SolveOptions
    slo: Slo | None = None
    engines: dict[str, EngineConfig] = field(default_factory=dict)
    step_models: dict[str, StepTimeModel] = field(default_factory=dict)
    simulation: SimulationSpec = field(default_factory=SimulationSpec)
    source: Path | None = None


_UNION_TAGS = {"str", "int", "float", "bool", "TraceDistribution", "LinearStepSpec", "GridSpec"}


def _format_loc(loc: tuple) -> str:
    """pydantic's error location as `gpus[0].cost`, without its union-branch tags."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_TAGS or any(c in part for c in "[](-"):
            continue  # e.g. 'list[list[constrained-float]]', 'literal['paper']': noise to a user
        else:
            out += f".{part}" if out else str(part)
    return out


def _one_line(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = _format_loc(tuple(err["loc"]))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key missing"
    elif err["type"] in ("finite_number",):
        msg = "must be a finite number (got NaN or inf)"
    msg = msg.replace("Input should be", "must be").replace("Value error, ", "")
    return f"{loc}: {msg}" if loc else msg


def read_document(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON file into a mapping; any problem is one MelangeError line."""
    if not path.is_file():
        raise MelangeError(f"{path}: file not found")
    text = path.read_text()
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        where = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {where if isinstance(exc, json.JSONDecodeError) else where + 1})" if where is not None else ""
        raise MelangeError(f"{path.name}: not valid {kind}{at}") from None
    if not isinstance(data, dict):
        raise MelangeError(f"{path.name}: expected a mapping of keys at the top level")
    return data


def _table(name: str, rows: list[list[float]], shape: tuple[int, int]) -> np.ndarray:
    if len(rows) != shape[0] or any(len(r) != shape[1] for r in rows):
        got = f"{len(rows)}x{len(rows[0]) if rows else 0}"
        if rows and any(len(r) != len(rows[0]) for r in rows):
            got = "ragged rows"
        raise MelangeError(f"{name}: table must be {shape[0]}x{shape[1]} to match the grid, got {got}")
    return np.asarray(rows, dtype=float)


def _distribution(name: str, table: np.ndarray, normalize: bool) -> np.ndarray:
    total = float(table.sum())
    if total <= 0:
        raise MelangeError(f"{name}: all shares are 0")
    if abs(total - 1.0) > SUM_TOLERANCE and not normalize:
        raise MelangeError(f"{name}: shares sum to {total:.6g}, not 1 (use --normalize to rescale)")
    return table / total


def _load_profile(gpu: GpuSpec, shape: tuple[int, int], base: Path) -> Profile | None:
    if gpu.profile is None:
        return None
    where = f"gpus[{gpu.name}].profile"
    if isinstance(gpu.profile, str):
        if not (base / gpu.profile).is_file():
            raise MelangeError(f"{where}: file {gpu.profile} not found")
        data = read_document(base / gpu.profile)
        rows = data.get("max_rate")
        if not isinstance(rows, list):
            raise MelangeError(f"{where}: file {gpu.profile} has no 'max_rate' table")
        try:
            rows = [[float(v) for v in row] for row in rows]
        except (TypeError, ValueError):
            raise MelangeError(f"{where}: max_rate must be a table of numbers") from None
        table = _table(where, rows, shape)
        if not np.all(np.isfinite(table)) or np.any(table < 0):
            raise MelangeError(f"{where}: max_rate must be finite and >= 0")
        return Profile(gpu.name, table, source=str(data.get("source", "given")))
    return Profile(gpu.name, _table(where, gpu.profile, shape))


def _from_seed(spec: SeedSpec, normalize: bool, source: Path) -> Scenario:
    dist = spec.workload_distribution
    shape = (len(dist), len(dist[0]) if dist else 0)
    if shape[0] == 0 or shape[1] == 0:
        raise MelangeError("workload_distribution: table is empty")
    # The seed carries no bucket edges: use the paper's grid when the shape matches it.
    paper = BucketGrid.paper()
    grid = paper if shape == paper.shape else BucketGrid(tuple(range(1, shape[0] + 2)),
                                                         tuple(range(1, shape[1] + 2)), indexed=True)
    distribution = _distribution("workload_distribution", _table("workload_distribution", dist, shape),
                                 normalize)
    gpus, profiles = [], {}
    for name, g in spec.gpu_info.items():
        gpus.append(GpuType(name=name, cost=g.cost))
        profiles[name] = Profile(name, _table(f"gpu_info.{name}.tputs", g.tputs, shape))
    return Scenario(
        name=source.stem,
        workload=Workload(grid, distribution, spec.total_request_rate),
        gpus=gpus,
        profiles=profiles,
        solve=SolveOptions(slice_factor=spec.slice_factor),
        source=source,
    )


def _with_catalog(g: GpuSpec, model: str | None, engine: EngineConfig,
                  preset: str | None = None) -> tuple[GpuSpec, StepTimeModel | None]:
    """Fill a GPU's cost/gpus/memory from its `catalog` entry; build its roofline step model."""
    where = f"gpus[{g.name}]"
    if g.catalog is None:
        if g.cost is None:
            raise MelangeError(f"{where}.cost: required key missing (or give catalog: GPU)")
        if g.step_time == "roofline":
            raise MelangeError(f"{where}.step_time: 'roofline' needs catalog: GPU")
        return g, None
    from melange.perf import RooflineParams, load_catalog, roofline_model  # only with catalog GPUs
    from melange.perf.catalog import GB, Instance

    catalog = load_catalog()
    inst = catalog.instance(g.catalog)
    if "gpus" in g.model_fields_set:
        inst = Instance(inst.gpu, g.gpus)
    g = g.model_copy(update={"cost": g.cost if g.cost is not None else inst.cost, "gpus": inst.count,
                             "memory_gb": g.memory_gb if g.memory_gb is not None else inst.gpu.memory / GB})
    if g.step_time != "roofline":
        return g, None
    if model is None:
        raise MelangeError(f"model: required when {where}.step_time is 'roofline'")
    return g, roofline_model(inst, catalog.model(model), engine, RooflineParams(preset=preset), catalog)


def _engine(g: GpuSpec, model: str | None) -> EngineConfig:
    """A GPU's engine settings; max_model_len defaults to the catalog model's context."""
    engine = EngineConfig(**g.engine.model_dump())
    if engine.max_model_len is None and model is not None and g.catalog is not None:
        from melange.perf import load_catalog

        engine = replace(engine, max_model_len=load_catalog().model(model).max_context)
    return engine


def _from_spec(spec: ScenarioSpec, normalize: bool, source: Path) -> Scenario:
    base = source.parent
    grid = BucketGrid.paper() if spec.grid == "paper" else BucketGrid(
        tuple(spec.grid.input_edges), tuple(spec.grid.output_edges))
    w = spec.workload
    if isinstance(w.distribution, TraceDistribution):
        trace = load_trace(w.distribution.trace, base)
        distribution = grid.histogram(trace.input_tokens, trace.output_tokens)
    elif w.distribution is None:
        if w.trace is None:
            raise MelangeError("workload.distribution: required (a table, or {trace: NAME})")
        trace = load_trace(w.trace, base)
        distribution = grid.histogram(trace.input_tokens, trace.output_tokens)
    else:
        distribution = _distribution("workload.distribution",
                                     _table("workload.distribution", w.distribution, grid.shape),
                                     normalize)
    if w.lengths == "trace" and w.trace is None:
        raise MelangeError("workload.trace: required when workload.lengths is 'trace'")
    if w.arrival.process == "trace" and (w.arrival.trace or w.trace) is None:
        raise MelangeError("workload.arrival.trace: required when arrival.process is 'trace'")
    # Trace names become absolute paths here, so every later reader finds the same file.
    trace = str(resolve_trace_path(w.trace, base)) if w.trace else None
    arrival_trace = str(resolve_trace_path(w.arrival.trace, base)) if w.arrival.trace else (
        trace if w.arrival.process == "trace" else None)
    arrival = Arrival(w.arrival.process, w.arrival.cv, arrival_trace, w.arrival.scale_to_rate)
    workload = Workload(grid, distribution, w.rate, arrival, w.lengths, trace)

    if spec.engine_preset is not None:
        from melange.perf import load_catalog

        try:
            load_catalog().engine(spec.engine_preset)
        except MelangeError as exc:
            raise MelangeError(f"engine_preset: {exc}") from None
    gpus, profiles, engines, steps = [], {}, {}, {}
    for g in spec.gpus:
        if g.max_count is not None and g.max_count < g.min_count:
            raise MelangeError(f"gpus[{g.name}].max_count: {g.max_count} is below min_count {g.min_count}")
        engine = _engine(g, spec.model)
        g, catalog_step = _with_catalog(g, spec.model, engine, spec.engine_preset)
        gpus.append(GpuType(g.name, g.cost, g.gpus, g.memory_gb, g.max_count, g.min_count, g.utilization))
        profile = _load_profile(g, grid.shape, base)
        if profile is not None:
            profiles[g.name] = profile
        engines[g.name] = engine
        if catalog_step is not None:
            steps[g.name] = catalog_step
        elif g.step_time is not None:
            steps[g.name] = LinearStepModel(**g.step_time.model_dump())
    s = spec.solver
    slo = None if spec.slo is None else Slo(**spec.slo.model_dump())
    return Scenario(
        name=spec.name,
        workload=workload,
        gpus=gpus,
        profiles=profiles,
        solve=SolveOptions(s.slice_factor, s.headroom, s.utilization, s.time_limit_s, s.backend),
        slo=slo,
        engines=engines,
        step_models=steps,
        simulation=spec.simulation,
        source=source,
    )


def load_scenario(path: str | Path | None = None, *, normalize: bool = False) -> Scenario:
    """Load and validate a scenario file (ours or the seed's format); None = the built-in default."""
    source = DEFAULT_SCENARIO if path is None else Path(path)
    if path is not None and not source.exists() and (BUILTIN_SCENARIOS / f"{path}.yaml").is_file():
        source = BUILTIN_SCENARIOS / f"{path}.yaml"  # a built-in scenario named by stem
    data = read_document(source)
    is_seed = "gpu_info" in data or "workload_distribution" in data
    try:
        if is_seed:
            return _from_seed(SeedSpec.model_validate(data), normalize, source)
        return _from_spec(ScenarioSpec.model_validate(data), normalize, source)
    except ValidationError as exc:
        raise MelangeError(f"{source.name}: {_one_line(exc)}") from None
    except MelangeError as exc:
        raise MelangeError(f"{source.name}: {exc}") from None

