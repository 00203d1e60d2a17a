"""`melange scenarios`: the built-in scenarios, and workload histograms built from traces."""

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
    """Built-in scenarios and workloads."""


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
