"""Writing files safely: atomically (temporary name, then rename) and append-only JSON lines.

A reader never sees half a file: `atomic_write_text` writes beside the target and renames, which
POSIX makes atomic, so an interrupted job leaves either the old file or the new one. Append-only
logs (`append_jsonl`) are flushed and fsynced line by line, and `read_jsonl` drops a torn last
line, so a killed run keeps every line it finished.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from melange.core import MelangeError


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically; a bad path is a one-line MelangeError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise MelangeError(f"output {path}: cannot write ({exc.strerror or exc})") from None
    return path


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line and make it durable before returning."""
    with Path(path).open("a", encoding="utf-8") as f:
        f.write(json.dumps(record, separators=(",", ":")) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_jsonl(path: str | Path) -> Iterator[dict]:
    """Every complete line of a JSON-lines file; a torn last line (killed writer) is skipped."""
    path = Path(path)
    if not path.is_file():
        return
    with path.open(encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.endswith("\n"):
                return  # the writer died mid-line
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def check_writable(path: str | Path, what: str = "output") -> Path:
    """Fail fast (before long work) when `path`'s directory cannot be created or written."""
    path = Path(path)
    if str(path) == "":
        raise MelangeError(f"{what}: empty path")
    target_dir = path if path.is_dir() else path.parent
    probe_dir = target_dir
    while not probe_dir.exists():
        probe_dir = probe_dir.parent
    if not probe_dir.is_dir() or not os.access(probe_dir, os.W_OK | os.X_OK):
        raise MelangeError(f"{what} {path}: directory {probe_dir} is not writable")
    return path
