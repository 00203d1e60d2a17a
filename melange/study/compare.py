"""Mélange against every single GPU type across request rates, all validated.

    sweep = compare_sweep("chat-120ms", [1, 2, 4, 8])   # rate x only = all + each GPU type
    table = run_sweep(sweep, "out/")                     # resumable, like any sweep
    savings(table)                                       # one row per rate

A compare is a sweep with `validate=True` over `rate` and `only` = ["all", each GPU type]: the
`all` point is `melange plan`'s loop (a plan that held on fresh seeds); a single-type point is that
type's validated baseline (the fewest instances that hold, one fewer seen to fail). The saving at
a rate is 1 - cost(Mélange) / the cheapest single type that held there: never against an
unchecked solver count, and left blank when either side did not hold.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from melange.core import MelangeError
from melange.study.sweep import Sweep

MELANGE = "all"


def compare_sweep(scenario: str | Path, rates: Iterable[float], *, requests: int | None = None) -> Sweep:
    """The validated sweep behind a compare: every rate x (Mélange and each GPU type alone)."""
    from melange.study.point import portable_document

    rates = [float(r) for r in rates]
    if not rates:
        raise MelangeError("--rate: give at least one request rate")
    _, sc = portable_document(scenario)
    gpus = [g.name for g in sc.gpus]
    return Sweep.create(scenario, {"rate": rates, "only": [MELANGE, *gpus]}, validate=True, requests=requests)


def _held_cost(row: pd.Series) -> float:
    """The point's $/h if its plan held in simulation, else NaN."""
    held, cost = row.get("held"), row.get("cost")
    ok = isinstance(held, (bool, np.bool_)) and bool(held) and cost is not None and np.isfinite(float(cost))
    return float(cost) if ok else np.nan


def savings(table: pd.DataFrame) -> pd.DataFrame:
    """Per rate: Mélange's held cost, the cheapest held single type and its cost, the saving."""
    rows = []
    frame = table.assign(held_cost=table.apply(_held_cost, axis=1)) if len(table) else table.assign(held_cost=[])
    for rate, part in frame.groupby("rate", sort=True):
        mel = part.loc[part["only"] == MELANGE, "held_cost"]
        mel_cost = float(mel.iloc[0]) if len(mel) else np.nan
        singles = part[(part["only"] != MELANGE) & part["held_cost"].notna()]
        best = singles.loc[singles["held_cost"].idxmin()] if len(singles) else None
        best_cost = np.nan if best is None else float(best["held_cost"])
        complete = not (part["status"] == "error").any() if "status" in part else True
        # A rate where a point errored has no saving: the missing type might have been the cheapest.
        saving = (1.0 - mel_cost / best_cost if complete and np.isfinite(mel_cost) and np.isfinite(best_cost)
                  else np.nan)
        row = {"rate": float(rate), "melange_cost": mel_cost,
               "best_single": None if best is None else best["only"], "best_single_cost": best_cost,
               "saving": saving}
        row.update({f"{r['only']}_cost": r["held_cost"] for _, r in part[part["only"] != MELANGE].iterrows()})
        rows.append(row)
    return pd.DataFrame(rows)


def savings_range(table: pd.DataFrame) -> tuple[float, float] | None:
    """(lowest, highest) saving over the rates where both sides held; None if none did."""
    s = savings(table)["saving"].dropna() if len(table) else pd.Series(dtype=float)
    return None if s.empty else (float(s.min()), float(s.max()))


def cost_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Held points labelled for `plots.cost_vs_rate`: 'Mélange' or 'G only'."""
    held = table[table.apply(_held_cost, axis=1).notna()] if len(table) else table
    labels = held["only"].map(lambda o: "Mélange" if o == MELANGE else f"{o} only")
    return held.assign(label=labels, cost=held["cost"].astype(float), rate=held["rate"].astype(float))


def compare_plots(table: pd.DataFrame, out_dir: str | Path, title: str = "Cost vs request rate") -> list[Path]:
    """cost_vs_rate.png/.svg: Mélange and every single type that held, like the paper's figures."""
    from melange.plots import cost_vs_rate

    frame = cost_frame(table)
    if frame.empty:
        return []
    return cost_vs_rate(frame, Path(out_dir) / "cost_vs_rate", title=title)


def savings_markdown(table: pd.DataFrame) -> str:
    """The savings table as Markdown (costs in $/h; '-' where a plan did not hold)."""
    s = savings(table)
    singles = [c for c in s.columns if c.endswith("_cost") and c not in ("melange_cost", "best_single_cost")]
    head = ["rate (req/s)", "Mélange $/h", *(c[:-5] + " $/h" for c in singles), "cheapest single", "saving"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    money = lambda v: "-" if v is None or not np.isfinite(v) else f"{v:.2f}"  # noqa: E731
    for r in s.to_dict("records"):
        cells = [f"{r['rate']:g}", money(r["melange_cost"]), *(money(r.get(c)) for c in singles),
                 r["best_single"] or "-", "-" if not np.isfinite(r["saving"]) else f"{r['saving']:.1%}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
