"""`melange compare`: Mélange against every single GPU type across rates, all validated."""

from __future__ import annotations

from pathlib import Path

import click


def run_with_progress(sweep, output: str, workers: int | None, out) -> object:
    """Run a sweep on the local pool with a progress bar; Ctrl-C/SIGTERM keep finished points."""
    from melange.cli.sweep import points_progress
    from melange.study import make_executor, run_sweep

    with points_progress(out, output) as (on_start, on_point):
        return run_sweep(sweep, output, executor=make_executor("local", workers=workers),
                         on_start=on_start, on_point=on_point)


def savings_view(table, title: str):
    """The per-rate savings as a rich table."""
    from rich.table import Table

    from melange.study.compare import savings

    s = savings(table)
    view = Table(title=title)
    for col in ("rate", "Mélange $/h", "cheapest single type", "its $/h", "saving"):
        view.add_column(col, justify="right")
    fmt = lambda v: "-" if v != v else f"{v:.2f}"  # noqa: E731 (NaN: did not hold)
    for r in s.to_dict("records"):
        view.add_row(f"{r['rate']:g}", fmt(r["melange_cost"]), r["best_single"] or "-", fmt(r["best_single_cost"]),
                     "-" if r["saving"] != r["saving"] else f"{r['saving']:.1%}")
    return view


@click.command()
@click.argument("scenario")
@click.option("--rate", required=True, help="Request rates (req/s), e.g. 1,2,4,8,16,32.")
@click.option("--requests", type=click.IntRange(min=1), help="Counted requests per simulated run.")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel workers (default: all cores).")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Directory (default: compare-SCENARIO).")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False), help="Directory for PNG/SVG plots.")
@click.pass_context
def compare(ctx, scenario, rate, requests, workers, output, plot_dir):
    """Validated Mélange plan vs each GPU type's fewest instances that hold, at every --rate."""
    from melange.cli.options import check_output
    from melange.cli.sweep import _list, _rate, report_failures
    from melange.files import check_writable
    from melange.report import console
    from melange.study.compare import compare_plots, compare_sweep

    output = output or f"compare-{Path(scenario).stem}"
    sweep = compare_sweep(scenario, _list(rate, _rate, "--rate"), requests=requests)  # inputs first: no empty folders
    check_writable(Path(output) / "points.jsonl", "-o")
    check_output(plot_dir, "--plot", is_dir=True)
    out = console()
    table = run_with_progress(sweep, output, workers, out)
    out.print(savings_view(table, f"{sweep.name}: Mélange vs the cheapest validated single type"))
    out.print(f"wrote {Path(output) / 'table.csv'} ({len(table)} points)")
    if plot_dir:
        out.print(f"wrote {len(compare_plots(table, plot_dir, sweep.name))} plots to {plot_dir}")
    report_failures(out, table, ctx)
