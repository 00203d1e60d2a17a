"""The catalog: GPU hardware, model architectures and engine presets, read from YAML data files.

The built-in files live in `melange/scenarios/catalog/`; users add GPUs and models in the same
format with `load_catalog(extra_paths)`. An instance of N GPUs of one type (tensor parallel) is
named "{N}x{GPU}", e.g. `4xH100`, and costs N times the GPU's price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from melange.core import MelangeError
from melange.files import load_yaml, read_text

BUILTIN_CATALOG = Path(__file__).resolve().parent.parent / "scenarios" / "catalog"
GB = 1e9  # datasheets count decimal gigabytes
GIB = 2 ** 30  # CUDA and vLLM report binary gibibytes
# Without a fit: FlashAttention-era prefill GEMMs reach 50-70 % of dense peak, weight streaming
# 80-90 % of datasheet bandwidth; a GPU family with no public measurement gets a wide band.
DEFAULT_FLOPS_EFFICIENCY = 0.6
DEFAULT_BANDWIDTH_EFFICIENCY = 0.8
DEFAULT_UNCERTAINTY = 0.25
SIBLING_UNCERTAINTY = 0.15  # a GPU fitted only through another GPU of its family
PCIE_GEN4_BYTES_S = 32 * GB  # x16, per direction: where an NVLink domain ends

_Pos = Annotated[float, Field(gt=0)]
_PosInt = Annotated[int, Field(ge=1)]


@dataclass(frozen=True)
class GpuHardware:
    """One GPU model's datasheet figures and default price."""

    name: str
    flops: float  # peak dense FP16/BF16 tensor FLOP/s
    bandwidth: float  # memory bandwidth, bytes/s
    memory: float  # bytes per GPU
    interconnect: str  # nvlink | pcie
    interconnect_bandwidth: float  # GPU-to-GPU bytes/s per direction
    cost: float  # $/h per GPU
    max_gpus: int = 8
    source: str = ""
    family: str = ""  # silicon generation: GPUs of one family share a calibration fit
    cuda_memory: float | None = None  # bytes CUDA reports as total (torch.cuda.mem_get_info)
    startup_s: float = 300.0  # from asking for an instance to its serving: boot, image pull, model load
    nvlink_gpus: int | None = None  # GPUs one NVLink domain joins (bridge pairs: 2); None = max_gpus

    def link(self, count: int) -> tuple[str, float]:
        """(nvlink | pcie, bytes/s per direction) a `count`-GPU instance all-reduces over: past an
        NVLink domain (a PCIe card's bridge joins pairs) the ring crosses PCIe Gen4 (32 GB/s)."""
        if self.interconnect == "nvlink" and count > (self.nvlink_gpus or self.max_gpus):
            return "pcie", PCIE_GEN4_BYTES_S
        return self.interconnect, self.interconnect_bandwidth

    @property
    def usable_memory(self) -> float:
        """Bytes the serving engine sees as the GPU's total: CUDA's figure, else the datasheet's."""
        return self.cuda_memory or self.memory


@dataclass(frozen=True)
class Instance:
    """A rentable instance: `count` GPUs of one type serving one replica with tensor parallelism."""

    gpu: GpuHardware
    count: int = 1

    @property
    def name(self) -> str:
        """Catalog name: the GPU's for one GPU, else '{count}x{gpu}'."""
        return self.gpu.name if self.count == 1 else f"{self.count}x{self.gpu.name}"

    @property
    def cost(self) -> float:
        """$/h of the whole instance."""
        return self.gpu.cost * self.count

    @property
    def memory(self) -> float:
        """Bytes of GPU memory over all GPUs of the instance."""
        return self.gpu.memory * self.count


@dataclass(frozen=True)
class ModelSpec:
    """A decoder-only transformer's architecture figures."""

    name: str
    params: float  # parameters
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    dtype_bytes: float = 2  # per weight and per KV element (2 = FP16/BF16)
    max_context: int = 4096
    source: str = ""

    @property
    def weight_bytes(self) -> float:
        """Bytes of weights, all read once per engine step."""
        return self.params * self.dtype_bytes

    @property
    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes one token occupies: K and V for every layer and KV head."""
        return 2 * self.layers * self.kv_heads * self.head_dim * self.dtype_bytes


@dataclass(frozen=True)
class EnginePreset:
    """The CPU side of one engine iteration (see catalog/engines.yaml for the sources)."""

    name: str
    overhead_s: float  # fixed CPU time per iteration
    per_seq_s: float  # CPU time per running sequence per iteration
    source: str = ""
    prefill_overhead_s: float = 0.0  # extra CPU time of an iteration that prefills
    uncertainty: float = DEFAULT_UNCERTAINTY  # relative step-time band of the fit (1 sigma)
    arrival_gap_s: float = 0.0  # API server time per request: a burst reaches the engine this far apart


@dataclass(frozen=True)
class FamilyFit:
    """GPU-side efficiencies of one GPU family, fitted to public measurements."""

    flops_efficiency: float  # achieved / peak dense FLOP/s in compute-bound GEMMs
    bandwidth_efficiency: float  # achieved / datasheet bandwidth when streaming weights
    uncertainty: float  # relative step-time band (1 sigma of the fit's log residuals)
    points: int = 0  # measurements the fit rests on
    source: str = ""
    gpus: tuple[str, ...] = ()  # the family's GPUs those measurements were taken on


@dataclass(frozen=True)
class Calibration:
    """What scripts/calibrate.py fitted (catalog/calibration.yaml); defaults where it has no data."""

    overlap: float = 0.0  # share of the shorter of compute and memory time not hidden by the other
    layer_floor_s: float = 0.0  # GPU time per layer per step that no batch size removes
    families: dict[str, FamilyFit] = field(default_factory=dict)

    def fit(self, gpu: GpuHardware) -> FamilyFit:
        """The fit for `gpu`'s family, or the unfitted defaults with the wide band. A GPU the
        family's measurements were not taken on (A10G from the A40's, H200 from the H100's) shares
        the efficiencies with at least SIBLING_UNCERTAINTY of band: its clocks, memory and
        datasheet figures are its own."""
        fit = self.families.get(gpu.family.lower())
        if fit is None:
            return FamilyFit(DEFAULT_FLOPS_EFFICIENCY, DEFAULT_BANDWIDTH_EFFICIENCY, DEFAULT_UNCERTAINTY, 0,
                             "no public measurements: the roofline's default efficiencies")
        if gpu.name.lower() in {g.lower() for g in fit.gpus}:
            return fit
        return replace(fit, uncertainty=max(fit.uncertainty, SIBLING_UNCERTAINTY))


@dataclass(frozen=True)
class Catalog:
    """GPUs, models and engine presets by lower-case name."""

    gpus: dict[str, GpuHardware] = field(default_factory=dict)
    models: dict[str, ModelSpec] = field(default_factory=dict)
    engines: dict[str, EnginePreset] = field(default_factory=dict)
    default_engine: str | None = None  # name of the preset used when none is named
    calibration: Calibration = field(default_factory=Calibration)

    def engine(self, name: str | None = None) -> EnginePreset:
        """The engine preset `name` (case-insensitive); None = the catalog's default preset."""
        key = (name or self.default_engine or "").lower()
        preset = self.engines.get(key)
        if preset is None:
            known = ", ".join(e.name for e in self.engines.values()) or "none"
            raise MelangeError(f"unknown engine preset {name!r}; known: {known}")
        return preset

    def gpu(self, name: str) -> GpuHardware:
        """The GPU named `name` (case-insensitive), or a MelangeError listing the known ones."""
        hw = self.gpus.get(name.lower())
        if hw is None:
            raise MelangeError(f"unknown GPU {name!r}; known: {', '.join(g.name for g in self.gpus.values())}")
        return hw

    def instance(self, name: str) -> Instance:
        """The instance named 'GPU' or '{N}x{GPU}' (e.g. '4xH100'), N up to the GPU's max_gpus."""
        match = re.fullmatch(r"(\d+)\s*[xX]\s*(.+)", name.strip())
        count, gpu_name = (int(match[1]), match[2]) if match else (1, name.strip())
        hw = self.gpu(gpu_name)
        if not 1 <= count <= hw.max_gpus:
            raise MelangeError(f"instance {name!r}: {hw.name} instances hold 1 to {hw.max_gpus} GPUs")
        return Instance(hw, count)

    def model(self, name: str) -> ModelSpec:
        """The model named `name` (case-insensitive), or a MelangeError listing the known ones."""
        spec = self.models.get(name.lower())
        if spec is None:
            raise MelangeError(f"unknown model {name!r}; known: {', '.join(m.name for m in self.models.values())}")
        return spec


# --- file schema --------------------------------------------------------------------------

class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


class _GpuEntry(_Strict):
    name: Annotated[str, Field(min_length=1)]
    flops_tflops: _Pos
    bandwidth_gb_s: _Pos
    memory_gb: _Pos
    interconnect: Literal["nvlink", "pcie"] = "pcie"
    interconnect_gb_s: _Pos
    max_gpus: _PosInt = 8
    cost: _Pos
    source: str = ""
    family: str = ""
    cuda_memory_gib: _Pos | None = None
    startup_s: Annotated[float, Field(ge=0)] = 300.0
    nvlink_gpus: _PosInt | None = None


class _ModelEntry(_Strict):
    name: Annotated[str, Field(min_length=1)]
    params_b: _Pos
    layers: _PosInt
    hidden: _PosInt
    heads: _PosInt
    kv_heads: _PosInt
    head_dim: _PosInt
    intermediate: _PosInt
    vocab: _PosInt
    dtype_bytes: Annotated[float, Field(gt=0, le=8)] = 2
    max_context: _PosInt = 4096
    source: str = ""


class _EngineNumbers(_Strict):
    name: Annotated[str, Field(min_length=1)]
    overhead_ms: Annotated[float, Field(ge=0)]
    per_seq_us: Annotated[float, Field(ge=0)]
    prefill_overhead_ms: Annotated[float, Field(ge=0)] = 0.0
    arrival_gap_ms: Annotated[float, Field(ge=0)] = 0.0
    uncertainty: Annotated[float, Field(gt=0, lt=1)] = DEFAULT_UNCERTAINTY


class _EngineEntry(_EngineNumbers):
    default: bool = False
    source: str = ""


class _FamilyEntry(_Strict):
    family: Annotated[str, Field(min_length=1)]
    flops_efficiency: Annotated[float, Field(gt=0, le=1)]
    bandwidth_efficiency: Annotated[float, Field(gt=0, le=1)]
    uncertainty: Annotated[float, Field(gt=0, lt=1)]
    points: Annotated[int, Field(ge=0)] = 0
    gpus: list[str] = []
    source: str = ""


class _PresetFit(_EngineNumbers):  # calibration.yaml: the fitted numbers of a named preset
    points: Annotated[int, Field(ge=0)] = 0
    fitted_to: str = ""


class _CalibrationEntry(_Strict):
    overlap: Annotated[float, Field(ge=0, le=1)] = 0.0
    layer_floor_us: Annotated[float, Field(ge=0)] = 0.0
    families: list[_FamilyEntry] = []
    presets: list[_PresetFit] = []


class _CatalogFile(_Strict):
    gpus: list[_GpuEntry] = []
    models: list[_ModelEntry] = []
    engines: list[_EngineEntry] = []
    calibration: _CalibrationEntry | None = None


def _one_line(path: Path, exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p))
                  for i, p in enumerate(err["loc"]))
    msg = {"extra_forbidden": "unknown key", "missing": "required key missing"}.get(err["type"], err["msg"])
    return f"{path.name}: {loc}: {msg.replace('Input should be', 'must be')}"


def _read(path: Path) -> _CatalogFile:
    if not path.is_file():
        raise MelangeError(f"{path}: catalog file not found")
    try:
        data = load_yaml(read_text(path))  # UTF-8 (or a BOM) and no duplicate keys
    except MelangeError as exc:
        raise MelangeError(f"{path.name}: {exc}" if not str(exc).startswith(path.name) else str(exc)) from None
    except yaml.YAMLError:
        raise MelangeError(f"{path.name}: not valid YAML") from None
    if not isinstance(data, dict):
        raise MelangeError(f"{path.name}: expected a mapping with 'gpus' and/or 'models' lists")
    try:
        return _CatalogFile.model_validate(data)
    except ValidationError as exc:
        raise MelangeError(_one_line(path, exc)) from None


def _gpu(e: _GpuEntry) -> GpuHardware:
    cuda = e.cuda_memory_gib * GIB if e.cuda_memory_gib else None
    return GpuHardware(e.name, e.flops_tflops * 1e12, e.bandwidth_gb_s * GB, e.memory_gb * GB,
                       e.interconnect, e.interconnect_gb_s * GB, e.cost, e.max_gpus, e.source,
                       e.family, cuda, e.startup_s, e.nvlink_gpus)


def _model(path: Path, i: int, e: _ModelEntry) -> ModelSpec:
    if e.heads % e.kv_heads:
        raise MelangeError(f"{path.name}: models[{i}].kv_heads: {e.kv_heads} does not divide heads {e.heads}")
    return ModelSpec(e.name, e.params_b * 1e9, e.layers, e.hidden, e.heads, e.kv_heads, e.head_dim,
                     e.intermediate, e.vocab, e.dtype_bytes, e.max_context, e.source)


def load_catalog(extra_paths: list[str | Path] | tuple[str | Path, ...] = ()) -> Catalog:
    """The built-in catalog plus the user's files; a later entry replaces one of the same name."""
    paths = sorted(BUILTIN_CATALOG.glob("*.yaml")) + [Path(p) for p in extra_paths]
    gpus: dict[str, GpuHardware] = {}
    models: dict[str, ModelSpec] = {}
    engines: dict[str, EnginePreset] = {}
    default_engine = None
    calibration = Calibration()
    preset_fits: list[tuple[str, _PresetFit]] = []  # (file name, fit)
    for path in paths:
        doc = _read(path)
        for g in doc.gpus:
            if re.fullmatch(r"\d+\s*[xX].*", g.name):
                raise MelangeError(f"{path.name}: gpus[{g.name}].name: must not start with 'Nx' "
                                   "(that names a multi-GPU instance)")
            gpus[g.name.lower()] = _gpu(g)
        for i, m in enumerate(doc.models):
            models[m.name.lower()] = _model(path, i, m)
        for e in doc.engines:
            engines[e.name.lower()] = EnginePreset(e.name, e.overhead_ms / 1e3, e.per_seq_us / 1e6, e.source,
                                                   e.prefill_overhead_ms / 1e3, e.uncertainty,
                                                   e.arrival_gap_ms / 1e3)
            if e.default:
                default_engine = e.name.lower()
        if doc.calibration is not None:
            c = doc.calibration
            preset_fits = [(path.name, f) for f in c.presets]
            calibration = Calibration(c.overlap, c.layer_floor_us / 1e6, {
                f.family.lower(): FamilyFit(f.flops_efficiency, f.bandwidth_efficiency, f.uncertainty,
                                            f.points, f.source, tuple(f.gpus)) for f in c.families})
    for where, f in preset_fits:  # fitted numbers replace the hand-set starting values
        e = engines.get(f.name.lower())
        if e is None:
            raise MelangeError(f"{where}: calibration.presets[{f.name}]: no engine preset of that name")
        engines[f.name.lower()] = EnginePreset(
            e.name, f.overhead_ms / 1e3, f.per_seq_us / 1e6, f"{e.source} Fitted: {f.fitted_to}".strip(),
            f.prefill_overhead_ms / 1e3, f.uncertainty, f.arrival_gap_ms / 1e3)
    return Catalog(gpus, models, engines, default_engine, calibration)
