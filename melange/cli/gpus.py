"""`melange gpus list`: the GPU catalog as a table."""

from __future__ import annotations

import click

from melange.cli.options import catalog_option


@click.group()
def gpus() -> None:
    """GPU hardware catalog."""


@gpus.command("list")
@catalog_option
def list_gpus(extra: tuple[str, ...]) -> None:
    """List known GPUs: dense FP16/BF16 TFLOP/s, bandwidth, memory, interconnect, $/h, and the
    step model's fit for the GPU's family (efficiencies and uncertainty band)."""
    from rich.table import Table

    from melange.perf.catalog import GB, load_catalog
    from melange.report import console

    table = Table(title="GPUs (an instance of N GPUs is named NxGPU, e.g. 4xH100; cost N x $/h)")
    for col in ("name", "TFLOP/s", "GB/s", "memory GB", "interconnect", "max GPUs", "$/h per GPU",
                "family: FLOP / GB/s efficiency, band"):
        table.add_column(col, justify="left" if col in ("name", "interconnect") else "right", no_wrap=col == "name")
    catalog = load_catalog(extra)
    for g in catalog.gpus.values():
        fit = catalog.calibration.fit(g)
        measured = f"{fit.points} points on {', '.join(fit.gpus)}" if fit.points else "no data"
        table.add_row(g.name, f"{g.flops / 1e12:g}", f"{g.bandwidth / GB:g}", f"{g.memory / GB:g}",
                      f"{g.interconnect} {g.interconnect_bandwidth / GB:g} GB/s", str(g.max_gpus), f"{g.cost:g}",
                      f"{g.family or '-'}: {fit.flops_efficiency:g} / {fit.bandwidth_efficiency:g}, "
                      f"±{fit.uncertainty:.0%} ({measured})")
    console().print(table)
