"""Scenario files (YAML or JSON): validated with pydantic, turned into the core dataclasses.

Two formats load:
- ours (see `melange/scenarios/default.yaml` for every key), and
- the seed research code's config (`gpu_info`, `workload_distribution`, `total_request_rate`,
  `slice_factor`), unchanged.
Every problem becomes one `MelangeError` line naming the field, e.g.
`scenario.yaml: gpus[1].cost: must be > 0`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

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
from melange.files import read_document  # noqa: F401  (re-exported: plan, grid and profile files)
from melange.scenario_schema import (  # noqa: F401  (SimulationSpec and the specs are re-exported)
    GpuSpec,
    ScenarioSpec,
    ScheduleSpec,
    SeedSpec,
    SimulationSpec,
    TraceDistribution,
    WorkloadFileDistribution,
)
from melange.traces import load_trace, resolve_trace_path

BUILTIN_SCENARIOS = Path(__file__).parent / "scenarios"
DEFAULT_SCENARIO = BUILTIN_SCENARIOS / "default.yaml"
SUM_TOLERANCE = 1e-3  # a distribution may be off by rounding; larger errors need --normalize

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
    schedule: ScheduleSpec | None = None  # load over time (melange schedule)
    hardware: dict[str, str] = field(default_factory=dict)  # type -> catalog GPU (shared caps, prices)
    excluded: dict[str, str] = field(default_factory=dict)  # (GPU × TP) pairs left out -> why


_UNION_TAGS = {"str", "int", "float", "bool", "TraceDistribution", "WorkloadFileDistribution", "LinearStepSpec", "GridSpec"}


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
    errors = exc.errors()
    loc = _format_loc(tuple(errors[0]["loc"]))
    # A union (e.g. grid: 'paper' or edges) reports each branch: the deepest one says what is wrong.
    err, loc = max(((e, _format_loc(tuple(e["loc"]))) for e in errors if _format_loc(tuple(e["loc"])).startswith(loc)),
                   key=lambda el: len(el[1]))
    msg = err["msg"]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key missing"
    elif err["type"] in ("finite_number",):
        msg = "must be a finite number (got NaN or inf)"
    elif isinstance(err.get("input"), bool) and err["type"] in ("float_type", "int_type"):
        msg = f"must be a number, not {str(err['input']).lower()}"
    elif err["type"] in ("int_type", "int_from_float") and isinstance(err.get("input"), float):
        msg = f"must be an integer, got {err['input']:g}"
    msg = msg.replace("Input should be", "must be").replace("Value error, ", "")
    return f"{loc}: {msg}" if loc else msg


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


def _profile_mismatch(data: dict, gpu: GpuSpec, spec: ScenarioSpec, grid: BucketGrid) -> str | None:
    """The first of a profile file's `gpu`, `model`, `slo` and `grid` that disagrees with the
    scenario, as 'field: file has X, scenario has Y'; None when all it states agree."""
    if "gpu" in data and data["gpu"] not in {gpu.name, gpu.catalog}:
        return f"gpu: file has {data['gpu']!r}, scenario has {gpu.catalog or gpu.name!r}"
    if "model" in data and spec.model is not None and data["model"] != spec.model:
        return f"model: file has {data['model']!r}, scenario has {spec.model!r}"
    if isinstance(data.get("slo"), dict) and spec.slo is not None:
        for key, ours in spec.slo.model_dump().items():
            theirs = data["slo"].get(key, ours)
            if theirs != ours and not (isinstance(theirs, (int, float)) and isinstance(ours, (int, float))
                                       and abs(theirs - ours) <= 1e-9 * max(abs(ours), 1.0)):
                return f"slo.{key}: file has {theirs!r}, scenario has {ours!r}"
    edges = data.get("grid") if isinstance(data.get("grid"), dict) else {}
    for key, ours in (("input_edges", grid.in_edges), ("output_edges", grid.out_edges)):
        if key in edges and list(edges[key]) != list(ours):
            return f"grid.{key}: file's differ from the scenario's"
    return None


def _load_profile(gpu: GpuSpec, shape: tuple[int, int], base: Path, spec: ScenarioSpec | None = None,
                  grid: BucketGrid | None = None, force: bool = False) -> Profile | None:
    if gpu.profile is None:
        return None
    where = f"gpus[{gpu.name}].profile"
    if isinstance(gpu.profile, str):
        # Beside the scenario file first, then among the built-in scenarios (profiles/...).
        path = next((p for p in (base / gpu.profile, BUILTIN_SCENARIOS / gpu.profile) if p.is_file()), None)
        if path is None:
            raise MelangeError(f"{where}: file {gpu.profile} not found (looked in {base} and the built-in "
                               "scenarios directory)")
        data = read_document(path)
        mismatch = None if force or spec is None else _profile_mismatch(data, gpu, spec, grid)
        if mismatch:
            raise MelangeError(f"{where}: {gpu.profile} was made for another setup, {mismatch} "
                               "(--force to use it anyway)")
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
        measured = data.get("measured") if isinstance(data.get("measured"), dict) else {}
        unmeasured = tuple((int(i), int(j)) for i, j in measured.get("unmeasured") or [])
        return Profile(gpu.name, table, source=str(data.get("source", "given")), unmeasured=unmeasured)
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
                  extra: tuple[str, ...] = (), preset: str | None = None) -> tuple[GpuSpec, StepTimeModel | None]:
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

    catalog = load_catalog(extra)
    inst = catalog.instance(g.catalog)
    if "gpus" in g.model_fields_set:
        inst = Instance(inst.gpu, g.gpus)
    g = g.model_copy(update={"cost": g.cost if g.cost is not None else inst.cost, "gpus": inst.count,
                             "memory_gb": g.memory_gb if g.memory_gb is not None else inst.gpu.memory / GB,
                             "startup_s": g.startup_s if g.startup_s is not None else inst.gpu.startup_s})
    if g.step_time != "roofline":
        return g, None
    if model is None:
        raise MelangeError(f"model: required when {where}.step_time is 'roofline'")
    return g, roofline_model(inst, catalog.model(model), engine, RooflineParams(preset=preset), catalog)


def _engine(g: GpuSpec, model: str | None, extra: tuple[str, ...] = ()) -> EngineConfig:
    """A GPU's engine settings; max_model_len defaults to the catalog model's context."""
    engine = EngineConfig(**g.engine.model_dump())
    if engine.max_model_len is None and model is not None and g.catalog is not None:
        from melange.perf import load_catalog

        engine = replace(engine, max_model_len=load_catalog(extra).model(model).max_context)
    return engine


def _from_spec(spec: ScenarioSpec, normalize: bool, source: Path, extra: tuple[str, ...] = (),
               force: bool = False) -> Scenario:
    base = source.parent
    grid = BucketGrid.paper() if spec.grid == "paper" else BucketGrid(
        tuple(spec.grid.input_edges), tuple(spec.grid.output_edges))
    w = spec.workload
    if isinstance(w.distribution, TraceDistribution):
        trace = load_trace(w.distribution.trace, base)
        distribution = grid.histogram(trace.input_tokens, trace.output_tokens)
    elif isinstance(w.distribution, WorkloadFileDistribution):
        from melange.workloads import load_workload_file

        distribution = load_workload_file(w.distribution.file, grid, base)
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
    gpus, profiles, engines, steps, hardware = [], {}, {}, {}, {}
    specs, excluded = expand_tensor_parallel(spec, extra)
    for g in specs:
        if g.max_count is not None and g.max_count < g.min_count:
            raise MelangeError(f"gpus[{g.name}].max_count: {g.max_count} is below min_count {g.min_count}")
        engine = _engine(g, spec.model, extra)
        g, catalog_step = _with_catalog(g, spec.model, engine, extra, spec.engine_preset)
        gpus.append(GpuType(g.name, g.cost, g.gpus, g.memory_gb, g.max_count, g.min_count, g.utilization,
                            g.startup_s))
        if g.catalog is not None:
            from melange.perf import load_catalog

            hardware[g.name] = load_catalog(extra).instance(g.catalog).gpu.name
        profile = _load_profile(g, grid.shape, base, spec, grid, force)
        if profile is not None:
            profiles[g.name] = profile
        engines[g.name] = engine
        if catalog_step is not None:
            steps[g.name] = catalog_step
        elif g.step_time is not None:
            steps[g.name] = LinearStepModel(**g.step_time.model_dump())
    busy = workload.bucket_rates() > 0
    for name, p in profiles.items():
        gap = [(i, j) for i, j in p.unmeasured if busy[i, j]]
        if gap:  # a 0 there says "not measured", not "cannot serve": the plan would rest on nothing
            raise MelangeError(f"gpus[{name}].profile: bucket {grid.label(*gap[0])} has traffic but was not "
                               f"measured ({len(gap)} such bucket(s)); measure them (profile --buckets)")
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
        schedule=spec.schedule,
        hardware=hardware,
        excluded=excluded,
    )


def expand_tensor_parallel(spec: ScenarioSpec, extra: tuple[str, ...] = ()) -> tuple[list[GpuSpec], dict[str, str]]:
    """The scenario's GPU entries with each `tensor_parallel` list expanded into one entry per
    degree that can serve the model (perf/instances.py); the pairs left out, with why."""
    out, excluded = [], {}
    for g in spec.gpus:
        if g.tensor_parallel is None:
            out.append(g)
            continue
        where = f"gpus[{g.name}].tensor_parallel"
        if g.catalog is None or spec.model is None:
            raise MelangeError(f"{where}: needs catalog: GPU and the scenario's model")
        from melange.perf import load_catalog
        from melange.perf.instances import candidate

        catalog = load_catalog(extra)
        gpu = catalog.gpu(g.catalog).name
        for n in sorted(set(g.tensor_parallel)):
            c = candidate(catalog, catalog.model(spec.model), gpu, n, _engine(g, spec.model, extra))
            name = g.name if n == 1 else f"{n}x{g.name}"
            if c.instance is None:
                excluded[name] = c.reason
                continue
            profile = g.profile.replace("{gpu}", name) if isinstance(g.profile, str) else g.profile
            cost = None if g.cost is None else g.cost * n  # with tensor_parallel, `cost` is per GPU
            out.append(g.model_copy(update={"name": name, "catalog": c.instance.name, "gpus": n, "cost": cost,
                                            "profile": profile, "tensor_parallel": None}))
    names = [g.name for g in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise MelangeError(f"gpus: duplicate GPU name {dup!r} after expanding tensor_parallel")
    if not out:
        raise MelangeError(f"gpus: no (GPU × TP) instance can serve {spec.model} ({next(iter(excluded.values()))})")
    return out, excluded


def is_fleet_document(data: Any) -> bool:
    """Whether a parsed document is a fleet file (melange/fleet.py): it lists models, no workload."""
    return isinstance(data, dict) and "models" in data and "workload" not in data


def load_scenario(path: str | Path | None = None, *, normalize: bool = False,
                  catalog: tuple[str, ...] = (), force: bool = False) -> Scenario:
    """Load and validate a scenario file (ours or the seed's format); None = the built-in default.
    `catalog`: extra catalog files whose GPUs and models the scenario may name; `force`: accept
    profile files made for another GPU, model, SLO or grid."""
    source = DEFAULT_SCENARIO if path is None else Path(path)
    if path is not None and not source.exists() and (BUILTIN_SCENARIOS / f"{path}.yaml").is_file():
        source = BUILTIN_SCENARIOS / f"{path}.yaml"  # a built-in scenario named by stem
    return scenario_from_document(read_document(source), source, normalize=normalize, catalog=catalog, force=force)


def scenario_from_document(data: dict[str, Any], source: Path, *, normalize: bool = False,
                           catalog: tuple[str, ...] = (), force: bool = False) -> Scenario:
    """Validate a parsed scenario document; relative file names resolve beside `source`."""
    is_seed = "gpu_info" in data or "workload_distribution" in data
    if is_fleet_document(data):
        raise MelangeError(f"{source.name}: a fleet file (it lists models), not a scenario: run melange fleet {source}")
    try:
        if is_seed:
            return _from_seed(SeedSpec.model_validate(data), normalize, source)
        return _from_spec(ScenarioSpec.model_validate(data), normalize, source, tuple(catalog), force)
    except ValidationError as exc:
        raise MelangeError(f"{source.name}: {_one_line(exc)}") from None
    except MelangeError as exc:
        raise MelangeError(f"{source.name}: {exc}") from None

