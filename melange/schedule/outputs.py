"""What `melange schedule` writes: schedule.json, schedule.csv (atomically), the fleet-against-load
plot (schedule.png/.svg) and the side-by-side table of strategies (compare.json)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from melange.files import atomic_write_text
from melange.load import Load
from melange.plots import fleet_over_time
from melange.schedule.milp import Schedule
from melange.schedule.replay import Replay


def window_table(s: Schedule, load: Load, run: Replay | None) -> pd.DataFrame:
    """Per window: start, rate, instances per type, planned $ and, when replayed, the attainment."""
    frame = pd.DataFrame({"window": np.arange(s.windows), "start_s": load.start_s, "rate": load.rate.round(4)})
    for k, g in enumerate(s.gpus):
        frame[g] = s.counts[:, k]
    frame["cost"] = s.window_cost().round(4)
    if run is not None:
        w = run.windows.set_index("window")
        frame["requests"] = frame["window"].map(w["requests"])
        frame["attainment"] = frame["window"].map(w["attainment"]).round(6)
        frame["held"] = frame["window"].map(w["held"])
        frame["reason"] = frame["window"].map(w["reason"])
    return frame


def schedule_document(s: Schedule, load: Load, run: Replay | None, **facts) -> dict:
    """schedule.json: the schedule, where its load came from, and its replay's verdicts."""
    doc = {"load": {"name": load.name, "attribution": load.attribution, "windows": load.windows,
                    "window_s": load.window_s, "mean_rate": load.mean_rate, "peak_rate": load.peak_rate},
           **facts, "schedule": s.to_dict()}
    if run is not None:
        doc["replay"] = run.summary()
        doc["windows"] = json.loads(run.windows.to_json(orient="records"))
    return doc


def write_outputs(folder: str | Path, s: Schedule, load: Load, run: Replay | None, **facts) -> list[Path]:
    """schedule.json, schedule.csv and schedule.png in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = [atomic_write_text(folder / "schedule.json", json.dumps(schedule_document(s, load, run, **facts), indent=1)),
             atomic_write_text(folder / "schedule.csv", window_table(s, load, run).to_csv(index=False))]
    failed = [] if run is None else run.judged[~run.judged["held"]]["start_s"].tolist()
    title = f"{load.name}: fleet by type against load (${s.cost:,.0f} planned; failed windows shaded)"
    return paths + fleet_over_time(load.start_s, load.window_s, s.counts, s.gpus, load.rate, failed, title,
                                   folder / "schedule")


def write_comparison(folder: str | Path, rows: list[dict], **facts) -> Path:
    """compare.json: one row per strategy, as `compare.Outcome.row`."""
    return atomic_write_text(Path(folder) / "compare.json", json.dumps({**facts, "strategies": rows}, indent=1))
