"""THE parser for durations, rates and percentages: every CLI option and file field uses it.

One rule (README, "Units"):
- a unit or a % sign is always accepted: `90s`, `2m`, `1h`, `120ms`; `16/s`, `960/min`; `10%`;
- a bare number is accepted only where it cannot be misread: 0 for a duration, a fraction in
  [0, 1] for a percentage, req/s for a rate, and a file field whose key names its unit
  (`tpot_ms: 100`, `warmup_s: 60`). Anything else is an error that shows the accepted forms,
  e.g. `--slo-ttft: '2' needs a unit: 2s or 2ms`.

No heavy imports (the CLI imports it at start-up); the click options live in melange/cli/options.py.
"""

from __future__ import annotations

import math
import re

from melange.errors import MelangeError

_NUMBER = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_SECONDS = {"h": 3600.0, "m": 60.0, "min": 60.0, "s": 1.0, "ms": 1e-3}
_PER_SECOND = {"s": 1.0, "sec": 1.0, "min": 1 / 60, "m": 1 / 60, "h": 1 / 3600}


def _split(text, name: str, units: str) -> tuple[float, str | None]:
    """(number, unit or None) from '12.5ms' / '10%' / 7; a bool or anything else is an error."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise MelangeError(f"{name}: must be a number with a unit, not {type(text).__name__}")
    if isinstance(text, (int, float)):
        value, unit = float(text), None
    else:
        match = re.fullmatch(rf"\s*({_NUMBER})\s*({units})?\s*", text)
        if not match:
            raise MelangeError(f"{name}: '{text}' is not a {_KIND[units]}")
        value, unit = float(match.group(1)), match.group(2)
    if not math.isfinite(value):
        raise MelangeError(f"{name}: must be a finite number")
    return value, unit


_DURATION_UNITS = "ms|min|h|m|s"
_RATE_UNITS = r"/s|/sec|/min|/m|/h|rps"
_KIND = {_DURATION_UNITS: "duration like 90s, 2m, 1h or 120ms", "%": "percentage like 10% or 0.1",
         _RATE_UNITS: "rate like 16, 16/s or 960/min"}


def parse_duration(text, name: str = "--duration", bare: str | None = None, *,
                   allow_zero: bool = False, hint: str = "s|m") -> float:
    """'1h', '30m', '90s', '120ms' -> seconds. A bare number needs `bare` (the unit a file key
    names, e.g. 'ms' for tpot_ms) unless it is 0; otherwise the error shows `hint`'s forms."""
    value, unit = _split(text, name, _DURATION_UNITS)
    if unit is None and bare is None and value != 0:
        forms = " or ".join(f"{text}{u}" for u in hint.split("|"))
        raise MelangeError(f"{name}: '{text}' needs a unit: {forms}")
    seconds = value * _SECONDS[unit or bare or "s"]
    if seconds < 0 or (seconds == 0 and not allow_zero):
        raise MelangeError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}")
    return seconds


def parse_ms(text, name: str) -> float:
    """'120ms' or '0.12s' -> milliseconds (a bare number is ambiguous here: an error)."""
    return parse_duration(text, name, hint="s|ms") * 1000.0


def parse_fraction(text, name: str, *, high: float = math.inf) -> float:
    """'10%' or a bare fraction in [0, 1] ('0.1') -> 0.1; a bare '10' is an error (10% or 0.1?)."""
    value, unit = _split(text, name, "%")
    if unit is None and not 0 <= value <= 1:
        raise MelangeError(f"{name}: '{text}' is ambiguous: write {text}% (or a fraction in [0, 1])")
    value = value / 100 if unit else value
    if not 0 <= value <= high:
        limit = f"{high:.0%}" if math.isfinite(high) else "inf"
        raise MelangeError(f"{name}: must be between 0% and {limit}")
    return value


def parse_rate(text, name: str) -> float:
    """'16', '16/s', '16rps', '960/min', '57600/h' -> req/s (> 0)."""
    value, unit = _split(text, name, _RATE_UNITS)
    rate = value * _PER_SECOND.get((unit or "/s").lstrip("/").replace("rps", "s"), 1.0)
    if not rate > 0:
        raise MelangeError(f"{name}: must be > 0 req/s")
    return rate
