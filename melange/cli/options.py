"""Click options and THE value parser for durations, rates and percentages.

One rule for every option and file field (README, "Units"):
- a unit or a % sign is always accepted: `90s`, `2m`, `1h`, `120ms`; `16/s`, `960/min`; `10%`;
- a bare number is accepted only where it cannot be misread: 0 for a duration, a fraction in
  [0, 1] for a percentage, req/s for a rate, and a file field whose key names its unit
  (`tpot_ms: 100`, `warmup_s: 60`). Anything else is an error that shows the accepted forms,
  e.g. `--slo-ttft: '2' needs a unit: 2s or 2ms`.

This module imports only click and the error type, so `melange --help` starts instantly.
"""

from __future__ import annotations

import math
import re

import click

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


def parse_slice_factor(text: str) -> int | str:
    """An integer >= 1, or 'continuous'."""
    if text == "continuous":
        return text
    if not text.isdigit() or int(text) < 1:
        raise MelangeError(f"--slice-factor: '{text}' must be an integer >= 1 or 'continuous'")
    return int(text)


def check_output(path: str | None, what: str = "-o", *, is_dir: bool = False) -> None:
    """An output path given on the command line must be non-empty and writable (before any work)."""
    if path is None:
        return
    from melange.files import check_writable

    if not path.strip():
        raise MelangeError(f"{what}: empty path")
    check_writable(path, what, is_dir=is_dir)


SEED = click.IntRange(0, 2**63 - 1)
catalog_option = click.option("--catalog", "extra", multiple=True, type=click.Path(dir_okay=False),
                              help="Extra catalog YAML file (same format as the built-in one); repeatable.")
scenario_argument = click.argument("scenario", required=False, metavar="[SCENARIO]")
normalize_option = click.option("--normalize", is_flag=True,
                                help="Rescale a workload distribution that does not sum to 1.")


def solver_options(f):
    """--slice-factor, --headroom, --utilization, --time-limit, --backend (override the scenario)."""
    options = [
        click.option("--slice-factor", help="Slices per bucket (integer) or 'continuous'."),
        click.option("--headroom", help="Over-provisioning, e.g. 10% (serve rate x 1.1)."),
        click.option("--utilization", help="Plan each GPU to at most this share of its max rate, e.g. 90%."),
        click.option("--time-limit", help="Solver time limit, e.g. 30s or 2m."),
        click.option("--backend", type=click.Choice(["highs", "cbc"]), help="MILP backend."),
    ]
    for option in reversed(options):
        f = option(f)
    return f
