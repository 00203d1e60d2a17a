"""`melange models list`: the model catalog as a table."""

from __future__ import annotations

import click

from melange.cli.options import catalog_option


@click.group()
def models() -> None:
    """Model catalog."""


@models.command("list")
@catalog_option
def list_models(extra: tuple[str, ...]) -> None:
    """List known models: size, architecture and KV-cache bytes per token."""
    from rich.table import Table

    from melange.perf.catalog import GB, load_catalog
    from melange.report import console

    table = Table(title="Models")
    for col in ("name", "params (B)", "weights GB", "layers", "hidden", "heads", "KV heads",
                "head dim", "KV MB/token", "max context"):
        table.add_column(col, justify="left" if col == "name" else "right", no_wrap=col == "name")
    for m in load_catalog(extra).models.values():
        table.add_row(m.name, f"{m.params / 1e9:.2f}", f"{m.weight_bytes / GB:.1f}", str(m.layers),
                      str(m.hidden), str(m.heads), str(m.kv_heads), str(m.head_dim),
                      f"{m.kv_bytes_per_token / 1e6:.3f}", str(m.max_context))
    console().print(table)
