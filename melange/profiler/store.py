"""The profile run's log: every record and every finished point, appended as JSON lines.

The first line describes the run (target, SLO, grid, search settings); a re-run with the same
file checks it matches, then reuses every finished point (its verdict and records) instead of
measuring it again. Records of a point that never finished (the run was killed mid-point) are
ignored: that point is measured again from scratch (a "start" line opens every attempt). Writes go through `melange.files`
(flushed and fsynced line by line; a torn last line is dropped on reading). Records are written
by one background thread, in order, so an fsync never stalls the client's event loop (it would
show up as send lag); a point's line is written only after all its records are.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

from melange.core import MelangeError
from melange.files import append_jsonl, read_jsonl
from melange.metrics import RECORD_COLUMNS, RequestRecord


def rate_key(rate: float, confirm: int = 0) -> str:
    """A point's rate as a stable string key; each confirming point (k-th seed) is a different point."""
    return f"{rate:.6g}" + ("" if not confirm else " confirm" if confirm == 1 else f" confirm{int(confirm)}")


class RunStore:
    """Append-only JSONL of one profile run; `points` and `probes` hold what is already done."""

    def __init__(self, path: str | Path, config: dict) -> None:
        self.path = Path(path)
        self.points: dict[tuple[int, int, str], dict] = {}
        self.probes: dict[tuple[int, int], float] = {}
        self.records: dict[tuple[int, int, str], list[dict]] = {}
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="melange-store")
        self._pending = []
        lines = list(read_jsonl(self.path))
        if self.path.is_file() and self.path.stat().st_size and not self.path.read_bytes().endswith(b"\n"):
            with self.path.open("ab") as f:  # end a line torn by a kill, so ours start clean
                f.write(b"\n")
        if lines:
            old = lines[0].get("config") if lines[0].get("type") == "run" else None
            if old is None:
                raise MelangeError(f"--store: {self.path} is not a profile run log")
            for key in sorted(set(old) | set(config)):
                if old.get(key) != config.get(key):
                    raise MelangeError(f"--store: {self.path} was made with another {key} "
                                       f"({old.get(key)!r}, now {config.get(key)!r}); use a new file")
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            append_jsonl(self.path, {"type": "run", "config": config})
        pending: dict[tuple[int, int, str], list[dict]] = {}
        for line in lines[1:]:
            kind = line.get("type")
            if kind == "probe":
                self.probes[tuple(line["bucket"])] = float(line["latency_s"])
            elif kind == "start":  # a new attempt at a point: drop what a killed one left
                pending[(*line["bucket"], line["rate"])] = []
            elif kind == "record":
                pending.setdefault((*line["bucket"], line["rate"]), []).append(line)
            elif kind == "point":
                key = (*line["bucket"], line["rate"])
                self.points[key] = line
                self.records[key] = pending.pop(key, [])

    def probe(self, i: int, j: int, latency_s: float) -> None:
        """Log one bucket's lone-request latency (the search's starting point)."""
        self.probes[(i, j)] = latency_s
        append_jsonl(self.path, {"type": "probe", "bucket": [i, j], "latency_s": latency_s})

    def start(self, i: int, j: int, key: str) -> None:
        """Log that point (bucket, `rate_key`) starts; records before this line are a killed attempt's."""
        self.flush()
        append_jsonl(self.path, {"type": "start", "bucket": [i, j], "rate": key})

    def record(self, i: int, j: int, key: str, rec: RequestRecord) -> None:
        """Log one finished request of point (bucket, `rate_key`)."""
        row = asdict(rec)
        row["itl_s"] = list(rec.itl_s or ())
        line = {"type": "record", "bucket": [i, j], "rate": key, **row}
        self._pending.append(self._writer.submit(append_jsonl, self.path, line))

    def flush(self) -> None:
        """Wait until every record handed to `record` is on disk."""
        for fut in self._pending:
            fut.result()
        self._pending = []

    def point(self, i: int, j: int, key: str, verdict: dict, records: list[RequestRecord]) -> None:
        """Log a finished point; from now on a re-run reuses it."""
        self.flush()
        line = {"type": "point", "bucket": [i, j], "rate": key, **verdict}
        self.points[(i, j, key)] = line
        self.records[(i, j, key)] = [asdict(r) for r in records]
        append_jsonl(self.path, line)


def record_rows(rows: list[dict]) -> list[dict]:
    """Log lines back to RequestRecord-shaped dicts (extra keys dropped)."""
    return [{c: r.get(c) for c in RECORD_COLUMNS} for r in rows]
