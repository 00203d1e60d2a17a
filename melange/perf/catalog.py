"""The catalog: GPU hardware, model architectures and engine presets, read from YAML data files.

The built-in files live in `melange/scenarios/catalog/`; users add GPUs and models in the same
format with `load_catalog(extra_paths)`. An instance of N GPUs of one type (tensor parallel) is
named "{N}x{GPU}", e.g. `4xH100`, and costs N times the GPU's price.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from melange.core import MelangeError
from melange.files import load_yaml, read_text

BUILTIN_CATALOG = Path(__file__).resolve().parent.parent / "scenarios" / "catalog"
GB = 1e9  # datasheets count decimal gigabytes

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


@dataclass(frozen=True)
class Catalog:
    """GPUs, models and engine presets by lower-case name."""

    gpus: dict[str, GpuHardware] = field(default_factory=dict)
    models: dict[str, ModelSpec] = field(default_factory=dict)
    engines: dict[str, EnginePreset] = field(default_factory=dict)
    default_engine: str | None = None  # name of the preset used when none is named

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


class _EngineEntry(_Strict):
    name: Annotated[str, Field(min_length=1)]
    overhead_ms: Annotated[float, Field(ge=0)]
    per_seq_us: Annotated[float, Field(ge=0)]
    default: bool = False
    source: str = ""


class _CatalogFile(_Strict):
    gpus: list[_GpuEntry] = []
    models: list[_ModelEntry] = []
    engines: list[_EngineEntry] = []


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
    return GpuHardware(e.name, e.flops_tflops * 1e12, e.bandwidth_gb_s * GB, e.memory_gb * GB,
                       e.interconnect, e.interconnect_gb_s * GB, e.cost, e.max_gpus, e.source)


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
            engines[e.name.lower()] = EnginePreset(e.name, e.overhead_ms / 1e3, e.per_seq_us / 1e6, e.source)
            if e.default:
                default_engine = e.name.lower()
    return Catalog(gpus, models, engines, default_engine)
