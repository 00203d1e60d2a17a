"""Request traces: CSV files of (arrival time,) input tokens and output tokens.

Built-in traces live in `melange/scenarios/traces/` (see the README there for their sources)
and can be named by file stem, e.g. `splitwise_conv`.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from melange.core import MelangeError
from melange.files import read_text

if TYPE_CHECKING:
    import pandas as pd  # imported where a trace is read: a scenario without traces loads faster

BUILTIN_TRACES = Path(__file__).parent / "scenarios" / "traces"

# Accepted column names, first match wins (Splitwise/Vidur names and our own).
_ARRIVAL = ("arrival_s", "arrived_at", "timestamp")
_INPUT = ("input_tokens", "num_prefill_tokens", "prompt_tokens")
_OUTPUT = ("output_tokens", "num_decode_tokens", "completion_tokens")


@dataclass(frozen=True)
class Trace:
    """Request lengths (tokens) and, when the trace has them, arrival times (s, from 0)."""

    input_tokens: np.ndarray
    output_tokens: np.ndarray
    arrival_s: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.input_tokens)


def resolve_trace_path(name: str | Path, base: Path | None = None) -> Path:
    """A trace path: as given, relative to `base`, or a built-in trace named by stem."""
    candidates = [Path(name)]
    if base is not None:
        candidates.append(base / name)
    candidates += [BUILTIN_TRACES / str(name), BUILTIN_TRACES / f"{name}.csv"]
    for path in candidates:
        if path.is_file():
            return path
    builtin = ", ".join(sorted(p.stem for p in BUILTIN_TRACES.glob("*.csv")))
    raise MelangeError(f"trace: file '{name}' not found (built-in traces: {builtin})")


def _column(frame: pd.DataFrame, names: tuple[str, ...], path: Path, required: bool) -> np.ndarray | None:
    for name in names:
        if name in frame.columns:
            return frame[name].to_numpy()
    if required:
        raise MelangeError(f"trace {path.name}: missing column, expected one of {', '.join(names)}")
    return None


def _seconds(values: np.ndarray, path: Path) -> np.ndarray:
    """Arrival times as float seconds: numbers, or date-times (ISO 8601 and the like)."""
    import pandas as pd

    if np.issubdtype(values.dtype, np.number):
        return values.astype(float)
    try:
        stamps = pd.to_datetime(pd.Series(values), format="mixed")
    except (ValueError, TypeError, OverflowError):
        raise MelangeError(f"trace {path.name}: arrival times must be numbers (s) or date-times") from None
    if stamps.isna().any():
        raise MelangeError(f"trace {path.name}: arrival times must be numbers (s) or date-times")
    return (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy()


def load_trace(name: str | Path, base: Path | None = None) -> Trace:
    """Read a trace CSV (UTF-8); lengths must be positive integers, arrivals non-decreasing
    seconds or date-times. A file whose text was parsed before is not parsed again (sweeps and
    validation loops simulate one trace many times); its arrays are read-only."""
    path = resolve_trace_path(name, base)
    return _parse_trace(path.name, read_text(path))


@lru_cache(maxsize=8)
def _parse_trace(name: str, text: str) -> Trace:
    """The trace in `text` (read from a file called `name`), checked; keyed on the text itself,
    so a file rewritten within its clock's resolution is still read afresh."""
    import pandas as pd

    path = Path(name)  # for messages
    try:
        frame = pd.read_csv(io.StringIO(text))
    except Exception as exc:  # pandas raises many types for malformed CSV
        raise MelangeError(f"trace {path.name}: cannot read CSV ({exc.__class__.__name__})") from None
    inputs = _column(frame, _INPUT, path, required=True)
    outputs = _column(frame, _OUTPUT, path, required=True)
    arrivals = _column(frame, _ARRIVAL, path, required=False)
    if len(inputs) == 0:
        raise MelangeError(f"trace {path.name}: no rows")
    for label, values in (("input tokens", inputs), ("output tokens", outputs)):
        if (not np.issubdtype(values.dtype, np.number) or np.any(~np.isfinite(values)) or np.any(values < 1)
                or np.any(values != np.round(values))):  # 50.7 tokens is a unit mistake, not 50
            raise MelangeError(f"trace {path.name}: {label} must be positive integers")
    if arrivals is not None:
        arrivals = _seconds(arrivals, path)
        if np.any(~np.isfinite(arrivals)) or np.any(np.diff(arrivals) < 0):
            raise MelangeError(f"trace {path.name}: arrival times must be finite and non-decreasing")
        arrivals = arrivals - arrivals[0]
    trace = Trace(inputs.astype(np.int64), outputs.astype(np.int64), arrivals)
    for array in (trace.input_tokens, trace.output_tokens, trace.arrival_s):
        if array is not None:
            array.flags.writeable = False  # shared by every caller of the cache
    return trace
