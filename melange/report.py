"""How results look to a person (rich tables) and on disk (JSON)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from rich.console import Console
from rich.table import Table

from melange.core import BucketGrid, GpuType, Plan
from melange.keys import canonical


def counts_text(counts: dict[str, int]) -> str:
    """'2×L4, 1×H100': the instance types in use, with their counts."""
    return ", ".join(f"{n}×{g}" for g, n in counts.items() if n)


def plan_table(plan: Plan, gpus: list[GpuType], title: str = "Plan") -> Table:
    """Counts and cost per GPU type, with the solver's status, bound, gap and time."""
    gap = "-" if plan.gap is None else f"{plan.gap:.2%}"
    bound = "-" if plan.bound is None else f"{plan.bound:.3f}"
    secs = "-" if plan.solve_time_s is None else f"{plan.solve_time_s:.3f}"
    table = Table(title=title, caption=f"{plan.status}, bound ${bound}/h, gap {gap}, {secs} s",
                  min_width=46)
    table.add_column("GPU type")
    table.add_column("$/h each", justify="right")
    table.add_column("count", justify="right")
    table.add_column("$/h", justify="right")
    for g in gpus:
        n = plan.counts.get(g.name, 0)
        table.add_row(g.name, f"{g.cost:.3f}", str(n), f"{n * g.cost:.3f}")
    table.add_section()
    table.add_row("total", "", str(sum(plan.counts.values())), f"{plan.cost:.3f}")
    return table


def shares_table(plan: Plan, grid: BucketGrid, rates) -> Table:
    """Per non-empty bucket: its rate and the share of it each GPU type serves."""
    names = [g for g in plan.share if plan.counts.get(g, 0) > 0] or list(plan.share)
    table = Table(title="Per-bucket split")
    table.add_column("bucket (tokens)")
    table.add_column("req/s", justify="right")
    for name in names:
        table.add_column(name, justify="right")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if rates[i, j] <= 0:
                continue
            cells = [f"{plan.share[n][i, j]:.0%}" if plan.share[n][i, j] > 0 else "" for n in names]
            table.add_row(grid.label(i, j), f"{rates[i, j]:.3g}", *cells)
    return table


def baselines_table(best: Plan, singles: dict[str, Plan | None]) -> Table:
    """Single-GPU-type plans beside the mix, with what the mix saves."""
    table = Table(title="Single-type baselines (solver's counts, not validated: see melange plan --baselines)")
    table.add_column("plan")
    table.add_column("count", justify="right")
    table.add_column("$/h", justify="right")
    table.add_column("mix saves", justify="right")
    table.add_row("Mélange mix", str(sum(best.counts.values())), f"{best.cost:.3f}", "")
    for name, plan in singles.items():
        if plan is None:
            table.add_row(f"{name} only", "-", "cannot serve", "")
        else:
            saving = 1 - best.cost / plan.cost if plan.cost > 0 else 0.0
            table.add_row(f"{name} only", str(plan.counts[name]), f"{plan.cost:.3f}", f"{saving:.0%}")
    return table


def seed_result(plan: Plan) -> dict:
    """The seed research code's result shape: {gpu: count, ..., "cost": $/h}; a plan not proven
    optimal also carries "status" and "gap", so no reader mistakes it for the optimum."""
    out: dict = {name: int(n) for name, n in plan.counts.items()}
    out["cost"] = round(plan.cost, 9)  # 3 x 1.01 + 3.67 prints as 6.7, as the seed's example shows
    if plan.status != "optimal":
        out["status"] = plan.status
        out["gap"] = plan.gap
    return out


def not_optimal_line(plan: Plan) -> str:
    """The loud console line for a plan the solver did not prove optimal."""
    gap = "unknown" if plan.gap is None else f"{plan.gap:.2%}"
    bound = "-" if plan.bound is None else f"${plan.bound:.3f}/h"
    return (f"[bold red]NOT PROVEN OPTIMAL[/]: status {plan.status}, gap {gap} above the best bound {bound}; "
            "raise --time-limit to prove it (exit code 1)")


def write_json(path: str | Path, data: dict) -> None:
    """Write `data` as indented JSON (NaN/inf as null), atomically; a bad path is a one-line error."""
    from melange.files import atomic_write_text

    atomic_write_text(path, json.dumps(canonical(data), indent=2) + "\n")


class _UncutConsole(Console):
    """Prints tables whose cells fold onto a second line instead of being cut ('327…')."""

    def print(self, *objects, **kwargs) -> None:
        for obj in objects:
            if isinstance(obj, Table):
                for column in obj.columns:
                    column.overflow = "fold"
        super().print(*objects, **kwargs)


def console() -> Console:
    """The console every command prints to: $COLUMNS when set, else the terminal's width, or wide
    when piped, so a table is never cut to 80 columns in a file or a pipe (cells fold instead)."""
    columns = os.environ.get("COLUMNS", "")
    if columns.isdigit() and int(columns) > 0:
        return _UncutConsole(width=int(columns))
    return _UncutConsole(width=None if sys.stdout.isatty() else 1000)
