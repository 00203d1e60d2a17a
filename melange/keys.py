"""Stable keys for caches and resumable runs: a hash of the inputs, and of the code they ran on.

Sim-profile buckets (`perf/profile_sim.py`), `melange plan -o` directories (`validate/store.py`) and
sweep points (`study/point.py`) are all keyed this way, so a finished unit of work is reused
exactly when nothing that decides its result has changed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from pathlib import Path

import numpy as np

import melange

PACKAGE_DIR = Path(melange.__file__).resolve().parent


def canonical(value):
    """JSON-ready form of inputs (dataclasses, pydantic models, arrays, paths; NaN -> None)."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__,
                **{f.name: canonical(getattr(value, f.name)) for f in dataclasses.fields(value)}}
    if hasattr(value, "model_dump"):  # a pydantic model
        return canonical(value.model_dump())
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    if isinstance(value, np.ndarray):
        return canonical(value.tolist())
    if isinstance(value, (np.integer, np.floating)):
        return canonical(value.item())
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    return value


def digest(value, length: int = 32) -> str:
    """Hex SHA-256 of `value`'s canonical JSON, cut to `length` characters."""
    blob = json.dumps(canonical(value), sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:length]


def code_digest(patterns: tuple[str, ...], length: int = 16) -> str:
    """Hash of the package version and of the source files matching `patterns` (under melange/)."""
    h = hashlib.sha256(melange.__version__.encode())
    for pattern in patterns:
        for f in sorted(PACKAGE_DIR.glob(pattern)):
            h.update(str(f.relative_to(PACKAGE_DIR)).encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:length]


# Source a validated result (a sweep point, a `plan -o` run) depends on: a change recomputes it.
RESULT_CODE_FILES = ("core.py", "scenario.py", "scenario_schema.py", "fields.py", "workloads.py", "traces.py",
                     "units.py", "metrics.py", "acceptance.py", "rate_search.py", "keys.py", "validate/*.py",
                     "optimizer/*.py", "sim/*.py", "perf/*.py", "study/point.py")


def trace_digests(paths: list) -> dict[str, str]:
    """Content hashes of the trace files named (a result depends on their contents, not names)."""
    out = {}
    for name in paths:
        if name and Path(name).is_file():
            out[str(name)] = hashlib.sha256(Path(name).read_bytes()).hexdigest()
    return out
