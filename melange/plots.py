"""Plots (matplotlib, Agg backend): each a function of plain data and a path, written as PNG + SVG.

    cost_vs_rate(frame, "out/cost_vs_rate")        # -> [out/cost_vs_rate.png, .svg]

matplotlib is imported on first use, so the rest of Mélange never pays for it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from melange.core import BucketGrid, Plan, Slo


def _grid_axes(ax, grid: BucketGrid) -> None:
    """Label a bucket map's axes with the grid's token ranges (output across, input down)."""
    ax.set_xticks(range(grid.shape[1]), [f"{grid.out_edges[j]}-{grid.out_edges[j + 1]}" for j in range(grid.shape[1])],
                  rotation=45, fontsize=7)
    ax.set_yticks(range(grid.shape[0]), [f"{grid.in_edges[i]}-{grid.in_edges[i + 1]}" for i in range(grid.shape[0])],
                  fontsize=7)
    ax.set_xlabel("output tokens")
    ax.set_ylabel("input tokens")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: str | Path) -> list[Path]:
    """Write `fig` as path.png and path.svg (any suffix on `path` is replaced) and close it."""
    base = Path(path)
    base.parent.mkdir(parents=True, exist_ok=True)
    paths = [base.with_suffix(".png"), base.with_suffix(".svg")]
    for p in paths:
        fig.savefig(p, dpi=150 if p.suffix == ".png" else None, bbox_inches="tight")
    _pyplot().close(fig)
    return paths


def _slice_order(values) -> list:
    """Slice factors in increasing order, 'continuous' last."""
    ints = sorted(int(v) for v in set(values) if str(v) != "continuous")
    return [str(v) for v in ints] + (["continuous"] if "continuous" in {str(v) for v in values} else [])


def cost_vs_rate(frame: pd.DataFrame, path: str | Path, title: str = "Cost vs request rate") -> list[Path]:
    """$/h against req/s, one line per `label` (e.g. 'Mélange', 'A10G only'), like the paper's figures."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    markers, dashes = "osD^vP*X", ["--", "-.", ":", (0, (5, 1, 1, 1))]
    for k, (label, part) in enumerate(frame.dropna(subset=["cost"]).groupby("label", sort=False)):
        part = part.sort_values("rate")
        # Mélange solid and on top; every other line its own marker and dash, drawn a little
        # transparent and larger, so one that coincides with Mélange's still shows around it.
        mine = str(label).lower().startswith("m")
        style = ({"linewidth": 2.5, "zorder": 3, "marker": "o"} if mine else
                 {"linestyle": dashes[k % len(dashes)], "marker": markers[1 + k % (len(markers) - 1)],
                  "markersize": 8, "alpha": 0.8, "markerfacecolor": "none"})
        ax.plot(part["rate"], part["cost"], label=str(label), **style)
    ax.set_xlabel("request rate (req/s)")
    ax.set_ylabel("cost ($/h)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    return save(fig, path)


def cost_vs_slice_factor(frame: pd.DataFrame, path: str | Path, target: float | None = None,
                         title: str | None = None) -> list[Path]:
    """$/h (and SLO attainment, when present) against the slice factor, one line per `label`; the
    cost axis starts at zero (a 1 % step must not look like a cliff)."""
    plt = _pyplot()
    has_att = "attainment" in frame and frame["attainment"].notna().any()
    title = title or ("Cost and attainment vs slice factor" if has_att else "Cost vs slice factor")
    fig, axes = plt.subplots(2 if has_att else 1, 1, figsize=(6, 6 if has_att else 3.5), sharex=True,
                             squeeze=False)
    order = _slice_order(frame["slice_factor"].astype(str))
    labels = frame["label"] if "label" in frame else pd.Series("", index=frame.index)
    for label, part in frame.assign(label=labels).groupby("label", sort=False):
        part = part.assign(x=part["slice_factor"].astype(str).map(order.index)).sort_values("x")
        axes[0][0].plot(part["x"], part["cost"], marker="o", label=str(label) or None)
        if has_att:
            axes[1][0].plot(part["x"], part["attainment"], marker="o")
    axes[0][0].set_ylabel("cost ($/h)")
    axes[0][0].set_ylim(0, float(frame["cost"].max()) * 1.15)  # from zero, with room above the top line
    if labels.nunique() == 1:  # one line: its values written in (a 1 % step is read, not guessed)
        part = frame.assign(x=frame["slice_factor"].astype(str).map(order.index))
        for x, cost in zip(part["x"], part["cost"]):
            axes[0][0].annotate(f"{cost:.2f}", (x, cost), textcoords="offset points", xytext=(0, 6), ha="center",
                                fontsize=8)
    axes[0][0].set_title(title)
    if labels.astype(str).str.len().any():
        axes[0][0].legend(fontsize="small")
    if has_att:
        axes[1][0].set_ylabel("SLO attainment")
        if target is not None:
            axes[1][0].axhline(target, color="red", linestyle=":", label=f"target {target:.0%}")
            axes[1][0].legend(fontsize="small")
    bottom = axes[-1][0]
    bottom.set_xticks(range(len(order)), order)
    bottom.set_xlabel("slice factor")
    for row in axes:
        row[0].grid(alpha=0.3)
    return save(fig, path)


def _plain(value: float, _pos=None) -> str:
    """A log-axis tick as a plain number (1, 20, 300, 4000)."""
    return f"{value:g}"


def _plain_minor(value: float, _pos=None) -> str:
    """Minor log-axis ticks: label only 2x and 5x a power of ten, so labels never overlap."""
    lead = value / 10 ** np.floor(np.log10(value)) if value > 0 else 0
    return f"{value:g}" if round(lead) in (2, 5) else ""


def bucket_map(plan: Plan, grid: BucketGrid, path: str | Path, rates: np.ndarray | None = None,
               title: str = "Which GPU types serve each bucket") -> list[Path]:
    """The grid of buckets, each coloured by the GPU type serving most of it, shares written in."""
    plt = _pyplot()
    names = [g for g in plan.share if plan.counts.get(g, 0) > 0] or list(plan.share)
    shares = np.stack([np.asarray(plan.share[g]) for g in names])  # (G, I, J)
    served = shares.sum(axis=0) > 0
    if rates is not None:
        served &= np.asarray(rates) > 0
    major = np.where(served, shares.argmax(axis=0), -1).astype(float)
    major[~served] = np.nan
    fig, ax = plt.subplots(figsize=(1.5 * grid.shape[1] + 2.5, 0.6 * grid.shape[0] + 1.5))
    cmap = plt.get_cmap("tab10", max(len(names), 1))
    ax.imshow(major, cmap=cmap, vmin=-0.5, vmax=len(names) - 0.5, aspect="auto")
    for i, j in zip(*np.nonzero(served)):
        text = "\n".join(f"{names[k]} {shares[k, i, j]:.0%}" for k in np.argsort(-shares[:, i, j])
                         if shares[k, i, j] > 0)
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                bbox={"boxstyle": "round,pad=0.15", "facecolor": "white", "alpha": 0.75, "linewidth": 0})
    _grid_axes(ax, grid)
    ax.set_title(title)
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(k)) for k in range(len(names))]
    ax.legend(handles, names, bbox_to_anchor=(1.02, 1), loc="upper left", fontsize="small")
    return save(fig, path)


def latency_distribution(records: pd.DataFrame, slo: Slo, path: str | Path,
                         title: str = "Latency against the SLO") -> list[Path]:
    """Cumulative distributions of TPOT and TTFT (ms) from simulation records, with the SLO lines."""
    plt = _pyplot()
    ok = records[records["error"].isna()] if "error" in records else records
    tpot_col = "tpot_mean_s" if slo.definition == "mean" else "tpot_decode_s"
    tpot_label = (f"TPOT per request ({slo.definition}, ms)" if slo.per_request else
                  "decode TPOT per request (ms); the SLO limits their pooled mean")
    panels = [(tpot_label, ok[tpot_col], slo.tpot_ms), ("TTFT (ms)", ok["ttft_s"], slo.ttft_ms)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, (label, values, limit) in zip(axes, panels):
        v = np.sort(values.dropna().to_numpy() * 1000.0)
        if len(v):
            ax.plot(v, np.arange(1, len(v) + 1) / len(v))
        if limit is not None:
            ax.axvline(limit, color="red", linestyle=":", label=f"SLO {limit:g} ms")
            ax.legend(fontsize="small")
        ax.axhline(slo.attainment, color="grey", linewidth=0.8)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(_plain)  # 100, 200 rather than 10^2, 2x10^2 ...
        ax.xaxis.set_minor_formatter(_plain_minor)  # ... and minor labels that never overlap
        ax.set_xlabel(label)
        ax.set_ylabel("share of requests")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return save(fig, path)


def attainment_per_bucket(records: pd.DataFrame, grid: BucketGrid, path: str | Path,
                          target: float | None = None, title: str = "SLO attainment per bucket") -> list[Path]:
    """Heat map of the share of requests meeting the SLO in each bucket (needs `slo_met`)."""
    plt = _pyplot()
    inside = records[(records["bucket_in"] >= 0) & (records["bucket_out"] >= 0)]
    grouped = inside.groupby(["bucket_in", "bucket_out"])["slo_met"].agg(["mean", "size"])
    table = np.full(grid.shape, np.nan)
    for (i, j), row in grouped.iterrows():
        table[int(i), int(j)] = row["mean"]
    fig, ax = plt.subplots(figsize=(1.4 * grid.shape[1] + 2.5, 0.6 * grid.shape[0] + 1.5))
    low = 0.0 if target is None else max(0.0, 2 * target - 1)  # colours resolve around the target
    image = ax.imshow(table, cmap="RdYlGn", vmin=low, vmax=1.0, aspect="auto")
    for (i, j), row in grouped.iterrows():
        ax.text(int(j), int(i), f"{row['mean']:.1%}\nn={int(row['size'])}", ha="center", va="center", fontsize=8)
    _grid_axes(ax, grid)
    ax.set_title(title + (f" (target {target:.1%})" if target is not None else ""))
    fig.colorbar(image, ax=ax)
    return save(fig, path)


def _label(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    """'slice_factor=8, slo_tpot_ms=40' per row, over the axes that vary."""
    if not axes:
        return pd.Series("Mélange", index=frame.index)
    return frame[axes].apply(lambda r: ", ".join(f"{a}={v:g}" if isinstance(v, float) else f"{a}={v}"
                                                 for a, v in r.items()), axis=1)


def sweep_plots(table: pd.DataFrame, out_dir: str | Path, target: float | None = None) -> list[Path]:
    """The plots a sweep's tidy table supports: cost vs rate, cost and attainment vs slice factor."""
    out = Path(out_dir)
    paths: list[Path] = []
    ok = table[table["cost"].notna()]
    varying = [a for a in ("only", "slice_factor", "rate", "slo_tpot_ms", "headroom", "seed")
               if a in ok and ok[a].nunique() > 1]
    if "rate" in varying:
        others = [a for a in varying if a != "rate"]
        paths += cost_vs_rate(ok.assign(label=_label(ok, others)), out / "cost_vs_rate")
    if "slice_factor" in varying:
        others = [a for a in varying if a != "slice_factor"]
        paths += cost_vs_slice_factor(ok.assign(label=_label(ok, others)), out / "cost_vs_slice_factor", target)
    return paths


def fleet_over_time(start_s: np.ndarray, window_s: float, counts: np.ndarray, names: list[str], rate: np.ndarray,
                    failed_s: list[float], title: str, path: str | Path) -> list[Path]:
    """Instances serving per type (stacked) per window against the load's rate; failed windows shaded."""
    plt = _pyplot()
    edges = np.append(start_s, start_s[-1] + window_s) / 3600.0
    fig, ax = plt.subplots(figsize=(10, 4.5))
    ax.stackplot(edges, np.vstack([counts, counts[-1:]]).T, labels=names, step="post", alpha=0.8)
    ax.set_xlabel("hours from the start")
    ax.set_ylabel("instances serving")
    other = ax.twinx()
    other.step(edges, np.append(rate, rate[-1]), where="post", color="black", lw=1.2, label="load (req/s)")
    other.set_ylabel("req/s")
    for start in failed_s:
        ax.axvspan(start / 3600.0, (start + window_s) / 3600.0, color="red", alpha=0.15)
    ax.legend(loc="upper left", fontsize=8)
    other.legend(loc="upper right", fontsize=8)
    ax.set_title(title)
    return save(fig, path)
