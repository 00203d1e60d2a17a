"""`melange scenarios`: the built-in scenarios, workload histograms built from traces, and loads
over time (a workload per time window)."""

from __future__ import annotations

from pathlib import Path

import click

from melange.core import MelangeError


def describe(path: Path) -> str:
    """A scenario file's one-line description: its `description` key, else its first comment."""
    from melange.scenario import read_document

    doc = read_document(path)
    if doc.get("description"):
        return str(doc["description"]).strip().splitlines()[0]
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.startswith("#") and line.lstrip("# ").strip():
            return line.lstrip("# ").strip()
    return ""


def builtin_scenarios() -> dict[str, Path]:
    """Built-in scenario files by name (file stem)."""
    from melange.scenario import BUILTIN_SCENARIOS

    return {p.stem: p for p in sorted(BUILTIN_SCENARIOS.glob("*.yaml"))}


@click.group()
def scenarios() -> None:
    """Built-in scenarios, workloads and loads over time."""


@scenarios.command("list")
def list_() -> None:
    """Built-in scenarios with a one-line description each."""
    from rich.table import Table

    from melange.report import console

    table = Table(title="Built-in scenarios")
    table.add_column("name")
    table.add_column("description")
    for name, path in builtin_scenarios().items():
        table.add_row(name, describe(path))
    console().print(table)
    from melange.fleet import BUILTIN_FLEETS
    from melange.scenario import is_fleet_document, read_document

    fleets = Table(title="Built-in fleets (melange fleet NAME): several models and SLO classes on one fleet")
    fleets.add_column("name")
    fleets.add_column("description")
    for path in sorted(BUILTIN_FLEETS.glob("*.yaml")):
        if is_fleet_document(read_document(path)):
            fleets.add_row(path.stem, describe(path))
    console().print(fleets)


@scenarios.command()
@click.argument("name")
def show(name: str) -> None:
    """Print built-in scenario NAME (its file, with comments)."""
    found = builtin_scenarios()
    if name not in found:
        raise MelangeError(f"scenario: no built-in scenario '{name}' (built-in: {', '.join(found)})")
    click.echo(f"# {found[name]}")
    click.echo(found[name].read_text(encoding="utf-8"), nl=False)


@scenarios.command("build-workload")
@click.argument("traces", nargs=-1, required=True)
@click.option("--grid", default="paper", show_default=True, help="'paper' or IN,EDGES/OUT,EDGES.")
@click.option("--weights", help="Share of requests from each trace, e.g. 0.8,0.2 (default: equal).")
@click.option("--name", help="Workload name (default: the output file's stem).")
@click.option("--attribution", default="", help="Where the traces come from (kept in the file).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Workload YAML to write.")
def build_workload(traces, grid, weights, name, attribution, output) -> None:
    """Bucket TRACES (CSV or OpenAI-style JSONL logs; built-in trace names too) into a workload file."""
    from melange.files import check_writable
    from melange.workloads import build_workload as build, parse_grid, workload_document, write_workload

    check_writable(output, "-o")
    shares = None
    if weights:
        try:
            shares = [float(w) for w in weights.split(",")]
        except ValueError:
            raise MelangeError(f"--weights: '{weights}' is not a comma list of numbers") from None
    g = parse_grid(grid)
    distribution, facts = build(list(traces), g, shares)
    write_workload(output, workload_document(distribution, g, name or Path(output).stem, facts, attribution))
    click.echo(f"wrote {output}: {sum(p['requests'] for p in facts['traces'])} requests, "
               f"{int((distribution > 0).sum())} non-empty buckets")


@scenarios.command("build-load")
@click.argument("trace", required=False)
@click.option("--window", help="Window length, e.g. 10m, 300s or 1h (with TRACE).")
@click.option("--table", type=click.Path(dir_okay=False),
              help="CSV of start_s, rate[, cv] per window (instead of TRACE); evenly spaced from 0.")
@click.option("--workload", help="Workload file or built-in name giving --table's length mix.")
@click.option("--grid", default="paper", show_default=True, help="'paper' or IN,EDGES/OUT,EDGES.")
@click.option("--name", help="Load name (default: the output file's stem).")
@click.option("--attribution", default="", help="Where the data comes from (kept in the file).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Load JSON to write.")
def build_load(trace, window, table, workload, grid, name, attribution, output) -> None:
    """Build a load over time (one workload per window) from TRACE's arrival times, or from a
    --table of rates with a --workload's length mix."""
    from melange.files import check_writable
    from melange.load import load_from_table, load_from_trace, parse_window, write_load
    from melange.workloads import load_workload_file, parse_grid

    if trace is not None and table is not None:
        raise MelangeError("--table: give TRACE or --table, not both")
    if trace is None and table is None:
        raise MelangeError("build-load: give a TRACE with arrival times, or --table CSV with --workload")
    if trace is not None and window is None:
        raise MelangeError("--window: required with TRACE, e.g. --window 10m")
    if trace is not None and workload is not None:
        raise MelangeError("--workload: only with --table (a TRACE gives its own lengths)")
    if table is not None and workload is None:
        raise MelangeError("--workload: required with --table (it gives the length mix)")
    if table is not None and window is not None:
        raise MelangeError("--window: the table's start_s spacing is the window; leave --window out")
    g = parse_grid(grid)
    window_s = parse_window(window) if window is not None else None
    check_writable(output, "-o")
    stem = name or Path(output).stem
    if trace is not None:
        from melange.traces import load_trace

        load = load_from_trace(load_trace(trace), g, window_s, stem, attribution)
    else:
        from dataclasses import replace

        load = replace(load_from_table(table, g, load_workload_file(workload, g), stem), attribution=attribution)
    write_load(output, load)
    click.echo(f"wrote {output}: {load.windows} windows of {load.window_s:g}s, mean {load.mean_rate:.4g} req/s, "
               f"peak {load.peak_rate:.4g} req/s")


@scenarios.command()
def loads() -> None:
    """Built-in loads over time: windows, rates and source."""
    from rich.table import Table

    from melange.load import BUILTIN_LOADS, builtin_loads, read_load
    from melange.report import console

    table = Table(title="Built-in loads")
    for column in ("name", "windows", "window", "mean req/s", "peak req/s", "source"):
        table.add_column(column, justify="right" if "req/s" in column or column == "windows" else "left")
    for name in builtin_loads():
        load = read_load(BUILTIN_LOADS / f"{name}.json")
        source = load.attribution.strip().splitlines()[0] if load.attribution.strip() else ""
        table.add_row(name, str(load.windows), f"{load.window_s:g}s", f"{load.mean_rate:.2f}",
                      f"{load.peak_rate:.2f}", source)
    console().print(table)
