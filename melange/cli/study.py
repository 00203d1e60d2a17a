"""`melange study paper`: the Mélange paper's cost study on the built-in scenarios, validated."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def study() -> None:
    """Whole studies, each a set of resumable compares with a Markdown report."""


@study.command()
@click.option("--rates", default="1,2,4,8,16,32", show_default=True, help="Request rates (req/s).")
@click.option("--scenarios", help="Comma list of built-in scenarios (default: the six paper ones).")
@click.option("--requests", type=click.IntRange(min=1), help="Counted requests per simulated run (shorter runs).")
@click.option("--workers", type=click.IntRange(min=1), help="Parallel workers (default: all cores).")
@click.option("-o", "--output", default="study-paper", show_default=True, type=click.Path(file_okay=False),
              help="Directory: one compare per scenario, report.md; a re-run resumes.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Directory for PNG/SVG plots, linked from the report (default: DIR/plots).")
@click.option("--no-plot", is_flag=True, help="A report without plots (faster).")
@click.pass_context
def paper(ctx, rates, scenarios, requests, workers, output, plot_dir, no_plot):
    """Mélange vs every single GPU type on the paper's workloads and SLOs; writes DIR/report.md."""
    from melange.cli.compare import savings_view
    from melange.cli.options import check_output
    from melange.cli.sweep import _list, _rate, points_progress, report_failures
    from melange.files import check_writable
    from melange.report import console
    from melange.study import make_executor
    from melange.study.compare import compare_sweep
    from melange.study.paper import PAPER_SCENARIOS, run_study, summary_frame, write_report

    names = tuple(_list(scenarios, str, "--scenarios")) or PAPER_SCENARIOS
    for name in names:  # inputs first: no empty folders
        compare_sweep(name, _list(rates, _rate, "--rates"), requests=requests)
    check_writable(Path(output) / "report.md", "-o")
    check_output(plot_dir, "--plot", is_dir=True)
    out = console()
    with points_progress(out, output) as (on_start, on_point):
        tables = run_study(output, scenarios=names, rates=tuple(_list(rates, _rate, "--rates")),
                           requests=requests, executor=make_executor("local", workers=workers),
                           on_scenario=lambda n: out.print(f"[bold]{n}[/]"), on_start=on_start,
                           on_point=on_point)
    for name, table in tables.items():
        out.print(savings_view(table, f"{name}: Mélange vs the cheapest validated single type"))
    out.print(summary_frame(tables, output).to_string(index=False))
    out.print(f"wrote {write_report(output, tables, plot_dir=plot_dir, plots=not no_plot, requests=requests)}")
    import pandas as pd

    report_failures(out, pd.concat(tables.values(), ignore_index=True), ctx)
