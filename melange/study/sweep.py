"""Sweeps: every combination of the axis values, run on an executor, resumable.

    sweep = Sweep.create("default", {"slice_factor": [1, 8, "continuous"], "rate": [4, 16]})
    table = run_sweep(sweep, "out/", executor=LocalExecutor())

Each finished point is appended to `DIR/points.jsonl` as it finishes (durable, one line per
point, keyed by `point_key`); a re-run reads that log and skips finished points, so an interrupted
sweep loses nothing and recomputes nothing. At the end (also after an interrupt) the log becomes
one tidy table, `DIR/table.csv` (and `table.parquet` when pyarrow is installed).

`compare` is a layer on this: a sweep over `rate` x `only` = ["all", each GPU type] (Mélange and
every single-type plan, one table, one resumable log), grouped by rate; a study is compares over
built-in scenarios (one output directory each).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from melange.core import MelangeError
from melange.files import append_jsonl, atomic_write_text, check_writable, read_jsonl
from melange.study.executor import Executor, LocalExecutor
from melange.study.point import (
    AXES,
    apply_point,
    with_prebuilt_profiles,
    check_slo_axis,
    code_version,
    evaluate_point,
    point_key,
    portable_document,
    slo_profiles,
    swept_slo,
)

POINTS_FILE = "points.jsonl"
TABLE_COLUMNS = ["key", "scenario", *AXES, "validate", "status", "cost", "attainment", "attainment_lo",
                 "attainment_hi", "counted", "held", "choice", "rounds", "solve_s", "sim_s", "wall_s", "message"]


@dataclass
class Sweep:
    """A scenario (self-contained document), the axis values and whether points are validated."""

    name: str
    doc: dict
    axes: dict[str, list]
    validate: bool = False
    gpus: list[str] = field(default_factory=list)
    code: str = ""

    @classmethod
    def create(cls, scenario: str | Path, axes: dict[str, Iterable], *, validate: bool = False,
               requests: int | None = None) -> Sweep:
        """Load and check the scenario and axes (one-line errors) before any work."""
        doc, sc = portable_document(scenario)
        if requests is not None:
            doc.setdefault("simulation", {})["requests"] = int(requests)
            doc["simulation"].pop("duration_s", None)
        axes = {k: list(dict.fromkeys(v)) for k, v in axes.items() if v}  # each value once
        unknown = sorted(set(axes) - set(AXES))
        if unknown:
            raise MelangeError(f"sweep: unknown axis {unknown[0]!r} (axes: {', '.join(AXES)})")
        names = {g.name for g in sc.gpus} | {"all"}
        for value in axes.get("only", []):
            if value not in names:
                raise MelangeError(f"--only: no GPU type {value!r} (choose all or {', '.join(sorted(names - {'all'}))})")
        if any(swept_slo(sc, v) for v in axes.get("slo_tpot_ms", [])):
            check_slo_axis(doc, sc)
        if validate and sc.slo is not None:  # a run too short for a rate is refused now, not per point
            from melange.validate import run_settings

            for rate in axes.get("rate", [sc.workload.rate]):
                run_settings(apply_point(doc, {"rate": rate}))
        return cls(sc.name, doc, axes, validate, [g.name for g in sc.gpus], code_version())

    def points(self) -> list[dict]:
        """The cartesian product of the axes, in a fixed order (axes in AXES order)."""
        names = [a for a in AXES if a in self.axes]
        return [dict(zip(names, values)) for values in itertools.product(*(self.axes[a] for a in names))]

    def key(self, point: dict) -> str:
        """The point's key (see `point_key`)."""
        return point_key(self.doc, point, self.validate, self.code)


def _run_one(item: tuple[str, dict, dict, bool]) -> dict:
    """Worker entry: evaluate one point, return it with its key and the code it ran (module-level:
    picklable)."""
    key, doc, point, validate = item
    return {"key": key, "point": point, "result": evaluate_point(doc, point, validate), "code": code_version()}


def _died(item: tuple[str, dict, dict, bool], error: BaseException) -> dict:
    """The error row of a point whose worker died (Ray gave up retrying it)."""
    key, _, point, _ = item
    return {"key": key, "point": point, "result": {"status": "error", "cost": None, "counts": {},
                                                   "message": f"worker died: {type(error).__name__}"}}


def logged(out_dir: str | Path) -> dict[str, dict]:
    """Every point in `out_dir`'s log, by key (the last line of a key wins)."""
    done: dict[str, dict] = {}
    for line in read_jsonl(Path(out_dir) / POINTS_FILE):
        if isinstance(line, dict) and "key" in line:
            done[line["key"]] = line
    return done


def finished(out_dir: str | Path) -> dict[str, dict]:
    """Finished points of `out_dir`'s log, by key. A point that ended in an error (a crash, a file
    missing on a worker) is not finished: a re-run tries it again."""
    return {k: v for k, v in logged(out_dir).items() if (v.get("result") or {}).get("status") != "error"}


def prepare_profiles(sweep: Sweep, workers: int | None = None, progress: bool = False) -> dict:
    """Build (and cache on disk) the sim-profiles of every swept SLO, with all local cores; the
    document the points are sent with then carries their tables (`with_prebuilt_profiles`)."""
    from melange.scenario import scenario_from_document

    sc = scenario_from_document(sweep.doc, Path("<sweep>"))
    doc = sweep.doc
    for value in sweep.axes.get("slo_tpot_ms", []):
        slo = swept_slo(sc, value)
        if slo is not None:
            doc = with_prebuilt_profiles(doc, value, slo_profiles(sweep.doc, sc, slo, workers=workers,
                                                                  progress=progress))
    return doc


def run_sweep(sweep: Sweep, out_dir: str | Path, *, executor: Executor | None = None,
              on_start: Callable[[int, int], None] | None = None,
              on_point: Callable[[dict], None] | None = None) -> pd.DataFrame:
    """Evaluate every unfinished point, appending each as it finishes; returns the tidy table.

    `on_start(total, skipped)` is called once before work; `on_point(line)` after each point."""
    out = Path(check_writable(Path(out_dir) / POINTS_FILE, "-o")).parent
    out.mkdir(parents=True, exist_ok=True)
    keyed = [(sweep.key(p), p) for p in sweep.points()]
    done = finished(out)
    doc = prepare_profiles(sweep) if sweep.axes.get("slo_tpot_ms") else sweep.doc  # built here, once
    todo = [(k, doc, p, sweep.validate) for k, p in keyed if k not in done]
    if on_start:
        on_start(len(keyed), len(keyed) - len(todo))
    try:
        with closing((executor or LocalExecutor()).map(_run_one, todo, _died)) as results:
            for line in results:
                line["scenario"], line["validate"] = sweep.name, sweep.validate
                if line.get("code", sweep.code) != sweep.code:  # keyed by the code that made it, or an error
                    line["result"] = {"status": "error", "cost": None, "counts": {},
                                      "message": f"the worker ran other melange code ({line['code']}, "
                                                 f"not {sweep.code})"}
                append_jsonl(out / POINTS_FILE, line)
                if on_point:
                    on_point(line)
    finally:  # also after an interrupt: the table shows every point in the log (it is the truth)
        done = logged(out)
        table = tidy_table([done[k] for k, _ in keyed if k in done], sweep.gpus)
        write_table(table, out)
    return table


def tidy_table(lines: list[dict], gpus: list[str]) -> pd.DataFrame:
    """One row per point: inputs, instances per GPU type, cost, status, attainment, times."""
    rows = []
    for line in lines:
        result: dict[str, Any] = line["result"]
        row = {"key": line["key"], "scenario": line.get("scenario"), "validate": line.get("validate")}
        row.update({a: line["point"].get(a) for a in AXES})
        row.update({c: result.get(c) for c in TABLE_COLUMNS if c in result})
        if row.get("seed") is None:
            row["seed"] = result.get("seed")
        counts = result.get("counts") or {}
        row.update({f"n_{g}": counts.get(g, 0) if result.get("cost") is not None else None for g in gpus})
        rows.append(row)
    split = TABLE_COLUMNS.index("validate") + 1  # counts per type right after the inputs
    columns = TABLE_COLUMNS[:split] + [f"n_{g}" for g in gpus] + TABLE_COLUMNS[split:]
    frame = pd.DataFrame(rows, columns=columns)
    frame["slice_factor"] = frame["slice_factor"].astype("string")  # ints and 'continuous'
    return frame


def write_table(table: pd.DataFrame, out_dir: Path) -> list[Path]:
    """table.csv (atomic), and table.parquet when pyarrow is installed."""
    paths = [atomic_write_text(out_dir / "table.csv", table.to_csv(index=False))]
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        return paths
    tmp = out_dir / ".table.parquet.tmp"
    table.to_parquet(tmp, index=False)
    tmp.replace(out_dir / "table.parquet")
    return paths + [out_dir / "table.parquet"]
