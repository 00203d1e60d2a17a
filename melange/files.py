"""Writing files safely: atomically (temporary name, then rename) and append-only JSON lines.

A reader never sees half a file: `atomic_write_text` writes beside the target and renames, which
POSIX makes atomic, so an interrupted job leaves either the old file or the new one. Append-only
logs (`append_jsonl`) are flushed and fsynced line by line, and `read_jsonl` drops a torn last
line, so a killed run keeps every line it finished.
"""

from __future__ import annotations

import codecs
import json
import os
import tempfile
from collections.abc import Hashable, Iterator
from pathlib import Path
from typing import Any

import yaml

from melange.errors import MelangeError


_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


def read_text(path: str | Path) -> str:
    """A text file's content: UTF-8, or UTF-8/16/32 with a byte-order mark; anything else
    (Latin-1, binary) is one MelangeError line naming the file and the first bad byte."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MelangeError(f"{path}: cannot read ({exc.strerror or exc})") from None
    encoding = next((enc for bom, enc in _BOMS if raw.startswith(bom)), "utf-8")
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise MelangeError(f"{path.name}: not UTF-8 text (byte 0x{raw[exc.start]:02x} at offset {exc.start}); "
                           "save it as UTF-8") from None
    if "\x00" in text:
        raise MelangeError(f"{path.name}: binary file, not text")
    return text


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if isinstance(key, Hashable) and key in seen:
            raise MelangeError(f"duplicate key '{key}' (line {key_node.start_mark.line + 1})")
        if isinstance(key, Hashable):
            seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def load_yaml(text: str):
    """yaml.safe_load that refuses duplicate keys (MelangeError naming the key)."""
    return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader subclass)


def load_json(text: str):
    """json.loads that refuses duplicate keys (MelangeError naming the key)."""
    def pairs(items: list[tuple[str, object]]) -> dict:
        keys = [k for k, _ in items]
        dup = next((k for k in keys if keys.count(k) > 1), None)
        if dup is not None:
            raise MelangeError(f"duplicate key '{dup}'")
        return dict(items)

    return json.loads(text, object_pairs_hook=pairs)


def _umask() -> int:
    """The process's umask (read by setting it, then restoring it at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically; a bad path is a one-line MelangeError."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the user's umask
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


def check_writable(path: str | Path, what: str = "output", *, is_dir: bool = False) -> Path:
    """Fail fast, before long work, when `path` cannot be written: create its directory (as a
    real job would) and a probe file in it. `is_dir`: `path` itself is the directory."""
    if str(path).strip() == "":
        raise MelangeError(f"{what}: empty path")
    path = Path(path)
    if not is_dir and path.is_dir():
        raise MelangeError(f"{what} {path}: is a directory, expected a file")
    if is_dir and path.exists() and not path.is_dir():
        raise MelangeError(f"{what} {path}: is a file, expected a directory")
    directory = path if is_dir else path.parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".melange-probe-", dir=directory)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise MelangeError(f"{what} {path}: cannot write there ({exc.strerror or exc})") from None
    return path


def atomic_replace_dir_files(staging: Path, target: Path) -> list[Path]:
    """Move every file of `staging` into `target` by rename (atomic per file); returns them."""
    target.mkdir(parents=True, exist_ok=True)
    moved = []
    for f in sorted(staging.iterdir()):
        os.replace(f, target / f.name)
        moved.append(target / f.name)
    return moved


def read_document(path: Path) -> dict[str, Any]:
    """Parse a YAML or JSON file (UTF-8, or with a BOM) into a mapping; refuses duplicate keys;
    any problem is one MelangeError line."""
    if not path.is_file():
        raise MelangeError(f"{path}: file not found")
    text = read_text(path)
    try:
        data = load_json(text) if path.suffix == ".json" else load_yaml(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        where = getattr(exc, "lineno", None) or getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" (line {where if isinstance(exc, json.JSONDecodeError) else where + 1})" if where is not None else ""
        raise MelangeError(f"{path.name}: not valid {kind}{at}") from None
    except MelangeError as exc:  # a duplicate key
        raise MelangeError(f"{path.name}: {exc}") from None
    except RecursionError:
        raise MelangeError(f"{path.name}: nested too deeply") from None
    if not isinstance(data, dict):
        raise MelangeError(f"{path.name}: expected a mapping of keys at the top level")
    return data
