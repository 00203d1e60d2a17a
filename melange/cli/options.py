"""Click options and value parsers shared by several subcommands."""

from __future__ import annotations

import re

import click

from melange.core import MelangeError


def parse_fraction(text: str, name: str) -> float:
    """'10%' or '0.1' -> 0.1."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise MelangeError(f"{name}: '{text}' is not a number or percentage") from None
    if not (value >= 0 and value < float("inf")):
        raise MelangeError(f"{name}: must be a finite number >= 0")
    return value


_SECONDS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3}


def parse_duration(text: str, name: str = "--duration", bare: str = "s") -> float:
    """'1h', '30m', '90s', '120ms' -> seconds; a bare number is in unit `bare`."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(h|m|s|ms)?\s*", text)
    if not match:
        raise MelangeError(f"{name}: '{text}' is not a duration like 1h, 30m, 90s or 120ms")
    value = float(match.group(1)) * _SECONDS[match.group(2) or bare]
    if value <= 0:
        raise MelangeError(f"{name}: must be > 0")
    return value


def parse_ms(text: str, name: str) -> float:
    """'120ms', '0.12s' or a bare number of milliseconds -> milliseconds."""
    return parse_duration(text, name, bare="ms") * 1000.0


def parse_slice_factor(text: str) -> int | str:
    """An integer >= 1, or 'continuous'."""
    if text == "continuous":
        return text
    if not text.isdigit() or int(text) < 1:
        raise MelangeError(f"--slice-factor: '{text}' must be an integer >= 1 or 'continuous'")
    return int(text)


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
        click.option("--utilization", help="Plan every GPU to at most this share of its max rate, e.g. 90% "
                     "(replaces the scenario's per-type utilization)."),
        click.option("--time-limit", type=float, help="Solver time limit, seconds."),
        click.option("--backend", type=click.Choice(["highs", "cbc"]), help="MILP backend."),
    ]
    for option in reversed(options):
        f = option(f)
    return f
