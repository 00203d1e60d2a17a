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
    """List known GPUs: dense FP16/BF16 TFLOP/s, bandwidth, memory, interconnect, $/h."""
    from rich.table import Table

    from melange.perf.catalog import GB, load_catalog
    from melange.report import console

    table = Table(title="GPUs (an instance of N GPUs is named NxGPU, e.g. 4xH100; cost N x $/h)")
    for col in ("name", "TFLOP/s", "GB/s", "memory GB", "interconnect", "max GPUs", "$/h per GPU"):
        table.add_column(col, justify="left" if col in ("name", "interconnect") else "right", no_wrap=col == "name")
    for g in load_catalog(extra).gpus.values():
        table.add_row(g.name, f"{g.flops / 1e12:g}", f"{g.bandwidth / GB:g}", f"{g.memory / GB:g}",
                      f"{g.interconnect} {g.interconnect_bandwidth / GB:g} GB/s", str(g.max_gpus), f"{g.cost:g}")
    console().print(table)
