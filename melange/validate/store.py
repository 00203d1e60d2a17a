"""The output directory of `melange plan -o DIR`: never mixes runs, keeps finished work, resumes.

DIR/run.json names the inputs (a hash of the scenario's content and the loop's options);
DIR/rounds.jsonl gets one durable line per finished round or baseline check (`append_jsonl`);
DIR/plan.json is replaced atomically. A re-run with the same inputs replays the finished lines
instead of simulating them again; a directory holding a run of other inputs is refused (or
cleared with `fresh=True`), so its lines can never be mistaken for this run's.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import melange
from melange.core import MelangeError
from melange.files import append_jsonl, atomic_write_text, check_writable, read_jsonl
from melange.keys import RESULT_CODE_FILES, canonical, code_digest, digest, trace_digests
from melange.scenario import Scenario
from melange.validate.check import Confirmation
from melange.validate.loop import Round

RUN, ROUNDS, PLAN = "run.json", "rounds.jsonl", "plan.json"


def inputs_hash(sc: Scenario, **options) -> str:
    """Hash of everything that decides a run's results: the scenario's content, the contents of
    the traces it reads (lengths, arrivals), `options` and the code."""
    from melange.traces import resolve_trace_path

    parts = {f.name: getattr(sc, f.name) for f in dataclasses.fields(sc) if f.name != "source"}
    w, base = sc.workload, None if sc.source is None else sc.source.parent
    names = [resolve_trace_path(n, base) for n in (w.trace, w.arrival.trace) if n]
    return digest({"scenario": parts, "traces": trace_digests(names), "options": options,
                   "code": code_digest(RESULT_CODE_FILES)}, 16)


class RunDir:
    """One `plan -o` directory bound to one inputs hash."""

    def __init__(self, path: str | Path, key: str) -> None:
        self.path, self.key = Path(path), key
        check_writable(self.path, "-o", is_dir=True)
        if self.path.exists() and not self.path.is_dir():
            raise MelangeError(f"-o {self.path}: exists and is not a directory")

    def previous_key(self) -> str | None:
        """The inputs hash of the run already in the directory ('?' if unreadable, None if none)."""
        run = self.path / RUN
        if run.is_file():
            try:
                return str(json.loads(run.read_text(encoding="utf-8"))["inputs"])
            except (ValueError, KeyError, TypeError):
                return "?"
        return "?" if (self.path / ROUNDS).exists() or (self.path / PLAN).exists() else None

    def open(self, fresh: bool = False) -> tuple[list[dict], dict[tuple[str, int], Confirmation]]:
        """Claim the directory; return the finished rounds and baseline checks of this inputs' run.

        A run of other inputs is refused unless `fresh`, which discards it."""
        old = self.previous_key()
        if old is not None and old != self.key:
            if not fresh:
                raise MelangeError(f"-o {self.path}: holds a run of other inputs (scenario or options "
                                   "differ); use another directory, or --fresh to discard it")
            for name in (ROUNDS, PLAN, RUN):
                (self.path / name).unlink(missing_ok=True)
        atomic_write_text(self.path / RUN, json.dumps({"inputs": self.key, "melange": melange.__version__}) + "\n")
        log = self.path / ROUNDS
        if log.is_file() and log.stat().st_size and not log.read_bytes().endswith(b"\n"):
            with log.open("a", encoding="utf-8") as f:  # a killed writer's torn line stays alone
                f.write("\n")
        rounds, checks = [], {}
        for line in read_jsonl(log):
            if line.get("inputs") != self.key:
                continue
            if line.get("kind") == "round":
                rounds.append(line)
            elif line.get("kind") == "baseline":
                checks[(line["gpu"], int(line["count"]))] = Confirmation.from_dict(line["confirmation"])
        return _consecutive(rounds), checks

    def log_round(self, round_: Round) -> None:
        """Append one finished round (a `loop.Round`), durably."""
        append_jsonl(self.path / ROUNDS, {"kind": "round", "inputs": self.key, **round_.to_dict()})

    def log_check(self, gpu: str, count: int, confirmation: Confirmation) -> None:
        """Append one finished baseline check, durably."""
        append_jsonl(self.path / ROUNDS, {"kind": "baseline", "inputs": self.key, "gpu": gpu, "count": count,
                                          "confirmation": confirmation.to_dict()})

    def write_plan(self, doc: dict) -> Path:
        """Replace plan.json atomically."""
        return atomic_write_text(self.path / PLAN, json.dumps(canonical(doc), indent=2) + "\n")


def _consecutive(rounds: list[dict]) -> list[dict]:
    """Rounds 1, 2, ... as logged, up to the first gap (a duplicate keeps the first)."""
    by_index: dict[int, dict] = {}
    for r in rounds:
        by_index.setdefault(int(r["round"]), r)
    out = []
    while len(out) + 1 in by_index:
        out.append(by_index[len(out) + 1])
    return out
