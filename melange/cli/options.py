"""Click options shared by several subcommands; the value parsers live in melange/units.py
(one parser for options and file fields) and are re-exported here.

This module imports only click and light modules, so `melange --help` starts instantly.
"""

from __future__ import annotations

import click

from melange.errors import MelangeError
from melange.units import parse_duration, parse_fraction, parse_ms, parse_rate

__all__ = ["interruptible", "parse_duration", "parse_fraction", "parse_ms", "parse_rate", "parse_slice_factor", "check_output",
           "SEED", "catalog_option", "scenario_argument", "normalize_option", "solver_options"]


def parse_slice_factor(text: str) -> int | str:
    """An integer >= 1, or 'continuous'."""
    if text == "continuous":
        return text
    from melange.optimizer.milp import MAX_SLICE_FACTOR

    if not text.isdigit() or not 1 <= int(text) <= MAX_SLICE_FACTOR:
        raise MelangeError(f"--slice-factor: '{text}' must be an integer in 1..{MAX_SLICE_FACTOR} or 'continuous'")
    return int(text)


def check_output(path: str | None, what: str = "-o", *, is_dir: bool = False) -> None:
    """An output path given on the command line must be non-empty and writable (before any work)."""
    if path is None:
        return
    from melange.files import check_writable

    if not path.strip():
        raise MelangeError(f"{what}: empty path")
    check_writable(path, what, is_dir=is_dir)


def interruptible(fn, *args, **kwargs):
    """Call `fn` in a worker thread so that Ctrl-C/SIGTERM stop the command at once, even while
    it runs native code (a MILP solver) that would hold the signal until it returns."""
    import threading

    box: dict = {}

    def run() -> None:
        try:
            box["value"] = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="melange-work")
    thread.start()
    while thread.is_alive():
        thread.join(0.1)  # the main thread stays in Python, where signals are handled
    if "error" in box:
        raise box["error"]
    return box["value"]


SEED = click.IntRange(min=0)
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
        click.option("--time-limit", help="Solver time limit, e.g. 30s or 2m."),
        click.option("--backend", type=click.Choice(["highs", "cbc"]), help="MILP backend."),
    ]
    for option in reversed(options):
        f = option(f)
    return f
