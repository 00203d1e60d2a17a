"""`melange sweep`: every combination of the axis values, in parallel, resumable."""

from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path

import click

from melange.cli.options import parse_fraction, parse_ms, parse_slice_factor
from melange.core import MelangeError


def _list(text: str | None, parse, name: str) -> list:
    """'1,2,4' -> [parse('1'), ...]; None -> []."""
    if text is None:
        return []
    values = [v.strip() for v in text.split(",")]
    if not all(values):
        raise MelangeError(f"{name}: empty value in '{text}'")
    return [parse(v) for v in values]


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise MelangeError(f"--rate: '{text}' is not a number") from None
    from melange.fields import MAX_RATE

    if not 0 < value <= MAX_RATE:
        raise MelangeError(f"--rate: must be a number > 0 and at most {MAX_RATE:,.0f} req/s, got '{text}'")
    return value


def _seed(text: str) -> int:
    if not text.isdigit():
        raise MelangeError(f"--seed: '{text}' must be an integer >= 0")
    return int(text)


def report_failures(out, table, ctx: click.Context) -> None:
    """Print why each failed point failed (one line each) and exit 1 when any did: a table of
    'error' cells is not a result."""
    failed = table[table["status"].isin(["error", "infeasible"])] if len(table) else table
    if failed.empty:
        return
    axes = [a for a in ("only", "slice_factor", "rate", "slo_tpot_ms", "headroom", "seed") if table[a].nunique() > 1]
    for r in failed.to_dict("records"):
        where = ", ".join(f"{a}={r[a]}" for a in axes) or "the point"
        out.print(f"[red]{r['status']}[/] at {where}: {r['message']}")
    out.print(f"[red]{len(failed)} of {len(table)} points failed[/]")
    ctx.exit(1)


def parse_axes(only, slice_factor, rate, slo_tpot, headroom, seed) -> dict[str, list]:
    """The sweep axes from the command-line lists (an axis not given keeps the scenario's value)."""
    return {"only": _list(only, str, "--only"),
            "slice_factor": _list(slice_factor, parse_slice_factor, "--slice-factor"),
            "rate": _list(rate, _rate, "--rate"),
            "slo_tpot_ms": _list(slo_tpot, lambda v: parse_ms(v, "--slo-tpot"), "--slo-tpot"),
            "headroom": _list(headroom, lambda v: parse_fraction(v, "--headroom"), "--headroom"),
            "seed": _list(seed, _seed, "--seed")}


@contextmanager
def _sigterm_as_interrupt():
    """SIGTERM stops the sweep like Ctrl-C does (finished points are kept); yields the list the
    handler records the signal in (Ray's `wait` re-raises a plain KeyboardInterrupt, so the
    exception's type cannot tell SIGTERM from Ctrl-C)."""
    received: list[int] = []

    def handler(signum, frame):
        received.append(signum)
        raise KeyboardInterrupt()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield received
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def points_progress(out, output):
    """A progress bar over sweep points, yielding (on_start, on_point); Ctrl-C or SIGTERM stops
    the run, says the finished points are kept in `output`, and exits 130 or 143."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with _sigterm_as_interrupt() as received:
        try:
            with Progress("{task.description}", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=out) as bar:
                yield _progress_callbacks(bar)
        except KeyboardInterrupt:
            out.print(f"interrupted: finished points are kept in {output}; run the same command to resume")
            sys.exit(143 if signal.SIGTERM in received else 130)


def sweep_table(table, limit: int = 60):
    """The tidy table as a rich table: axes, instances per type, cost, attainment, status."""
    from rich.table import Table

    counts = [c for c in table.columns if c.startswith("n_")]
    axes = [c for c in ("only", "slice_factor", "rate", "slo_tpot_ms", "headroom", "seed") if table[c].nunique() > 1]
    view = Table(title=f"Sweep ({len(table)} points)")
    simulated = table["attainment"].notna().any()
    for col in [*axes, *(c[2:] for c in counts), "$/h", *(["attainment"] if simulated else []), "status"]:
        view.add_column(col, justify="right")
    for r in table.head(limit).to_dict("records"):
        att = "" if r["attainment"] is None or r["attainment"] != r["attainment"] else f"{r['attainment']:.2%}"
        cost = "" if r["cost"] is None or r["cost"] != r["cost"] else f"{r['cost']:.3f}"
        view.add_row(*(str(r[a]) for a in axes), *("" if r[c] != r[c] or r[c] is None else str(int(r[c]))
                                                   for c in counts), cost, *([att] if simulated else []),
                      str(r["status"]))
    if len(table) > limit:
        view.caption = f"first {limit} of {len(table)} rows; all in table.csv"
    return view


def _progress_callbacks(progress):
    task = {}

    def on_start(total: int, skipped: int) -> None:
        if skipped:
            progress.console.print(f"{skipped} of {total} points already finished: skipped")
        task["id"] = progress.add_task("sweep", total=total, completed=skipped)

    return on_start, lambda line: progress.advance(task["id"])


@click.command()
@click.argument("scenario")
@click.option("--slice-factor", help="Slice factors, e.g. 1,2,4,8,continuous.")
@click.option("--rate", help="Request rates (req/s), e.g. 1,2,4,8,16,32.")
@click.option("--slo-tpot", help="TPOT limits, e.g. 40ms,120ms (rebuilds roofline sim-profiles).")
@click.option("--headroom", help="Over-provisioning values, e.g. 0,10%,20%.")
@click.option("--seed", help="Simulation seeds, e.g. 0,1,2 (default: the scenario's).")
@click.option("--only", help="GPU types: 'all' (Mélange) and/or single types, e.g. all,A10G,H100.")
@click.option("--validate", is_flag=True, help="Prove each plan in simulation (melange plan's loop).")
@click.option("--requests", type=click.IntRange(min=1), help="Simulated requests per round (with --validate).")
@click.option("--executor", "kind", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", help="Ray cluster address (with --executor ray), e.g. auto or ray://head:10001.")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel workers (default: all cores).")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False),
              help="Directory for points.jsonl (resumable log) and table.csv/.parquet.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Directory for PNG/SVG plots.")
@click.pass_context
def sweep(ctx, scenario, slice_factor, rate, slo_tpot, headroom, seed, only, validate, requests, kind, address,
          workers, output, plot_dir):
    """Solve (or --validate) SCENARIO at every combination of the given axis values."""
    from melange.cli.options import check_output
    from melange.files import check_writable
    from melange.report import console
    from melange.study import Sweep, make_executor, prepare_profiles, run_sweep

    axes = parse_axes(only, slice_factor, rate, slo_tpot, headroom, seed)
    study = Sweep.create(scenario, axes, validate=validate, requests=requests)  # inputs first: no empty folders
    check_writable(Path(output) / "points.jsonl", "-o")
    check_output(plot_dir, "--plot", is_dir=True)
    executor = make_executor(kind, workers=workers, address=address)
    out = console()
    prepare_profiles(study, workers, progress=True)  # its own progress bar; cached per bucket
    with points_progress(out, output) as (on_start, on_point):
        table = run_sweep(study, output, executor=executor, on_start=on_start, on_point=on_point)
    out.print(sweep_table(table))
    out.print(f"wrote {Path(output) / 'table.csv'} ({len(table)} points)")
    if plot_dir:
        from melange.plots import sweep_plots

        target = (study.doc.get("slo") or {}).get("attainment", 0.99) if validate else None
        out.print(f"wrote {len(sweep_plots(table, plot_dir, target))} plots to {plot_dir}")
    report_failures(out, table, ctx)
