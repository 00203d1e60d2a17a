"""Workload histograms from request traces: share of requests per (input, output) length bucket.

A trace is a CSV with input/output token columns (see `melange.traces`) or a JSONL file of
OpenAI-style request logs, one request per line with `usage.prompt_tokens` and
`usage.completion_tokens` (also nested under `response` or `response.body`, as the OpenAI batch
API writes them). Several traces can be mixed with weights (e.g. 80 % chat / 20 % summarization):
the histogram is the weighted sum of each trace's own histogram, so the weights are shares of
requests whatever the traces' lengths.

Built-in workload files live in `melange/scenarios/workloads/` and can be named by stem
(`distribution: {file: chat}` in a scenario).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import yaml

from melange.core import BucketGrid, MelangeError
from melange.files import read_document
from melange.traces import Trace, load_trace, resolve_trace_path

BUILTIN_WORKLOADS = Path(__file__).parent / "scenarios" / "workloads"


def _usage(obj: dict) -> dict | None:
    """The `usage` block of one logged request, wherever the log format nests it."""
    for path in (("usage",), ("response", "usage"), ("response", "body", "usage")):
        node = obj
        for key in path:
            node = node.get(key) if isinstance(node, dict) else None
        if isinstance(node, dict):
            return node
    return None


def load_jsonl_trace(path: Path) -> Trace:
    """Token counts of every request in a JSONL log that carries prompt and completion tokens."""
    inputs, outputs = [], []
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise MelangeError(f"trace {path.name}: line {number} is not JSON") from None
            usage = _usage(obj) if isinstance(obj, dict) else None
            if usage is None:
                continue  # e.g. a failed request without usage
            p, c = usage.get("prompt_tokens"), usage.get("completion_tokens")
            if not isinstance(p, int) or not isinstance(c, int) or p < 1 or c < 1:
                continue  # nothing generated: not a request a GPU plan serves
            inputs.append(p)
            outputs.append(c)
    if not inputs:
        raise MelangeError(f"trace {path.name}: no line has usage.prompt_tokens and usage.completion_tokens >= 1")
    return Trace(np.array(inputs, dtype=np.int64), np.array(outputs, dtype=np.int64))


def read_requests(name: str | Path) -> Trace:
    """A trace of request lengths: CSV (built-in name or path) or OpenAI-style JSONL log."""
    path = resolve_trace_path(name) if not str(name).endswith(".jsonl") else Path(name)
    if path.suffix == ".jsonl":
        if not path.is_file():
            raise MelangeError(f"trace: file '{name}' not found")
        return load_jsonl_trace(path)
    return load_trace(path)


def parse_grid(text: str) -> BucketGrid:
    """'paper', or 'IN_EDGES/OUT_EDGES' as comma lists, e.g. '1,100,1000/1,100,500'."""
    if text == "paper":
        return BucketGrid.paper()
    try:
        ins, outs = text.split("/")
        return BucketGrid(tuple(int(v) for v in ins.split(",")), tuple(int(v) for v in outs.split(",")))
    except ValueError:
        raise MelangeError(f"--grid: '{text}' is not 'paper' or 'IN,EDGES/OUT,EDGES'") from None


def build_workload(traces: list[str | Path], grid: BucketGrid,
                   weights: list[float] | None = None) -> tuple[np.ndarray, dict]:
    """(distribution, facts) of the weighted mix of the traces' histograms on `grid`."""
    weights = weights or [1.0] * len(traces)
    if len(weights) != len(traces):
        raise MelangeError(f"--weights: {len(weights)} weights for {len(traces)} traces")
    if any(not np.isfinite(w) or w <= 0 for w in weights):
        raise MelangeError("--weights: every weight must be a number > 0")
    total = float(sum(weights))
    mix = np.zeros(grid.shape)
    parts = []
    for name, weight in zip(traces, weights):
        trace = read_requests(name)
        i, j = grid.bucket_of(trace.input_tokens, trace.output_tokens)
        inside = float(np.mean((i >= 0) & (j >= 0)))
        mix += grid.histogram(trace.input_tokens, trace.output_tokens) * (weight / total)
        parts.append({"trace": Path(str(name)).name, "weight": round(weight / total, 6),
                      "requests": len(trace), "outside_grid": round(1.0 - inside, 6)})
    return mix / mix.sum(), {"traces": parts}


def workload_document(distribution: np.ndarray, grid: BucketGrid, name: str, facts: dict,
                      attribution: str = "") -> dict:
    """The YAML form of a workload histogram (what `distribution: {file: …}` reads)."""
    doc = {"name": name}
    if attribution:
        doc["attribution"] = attribution
    doc.update(facts)
    doc["grid"] = {"input_edges": list(grid.in_edges), "output_edges": list(grid.out_edges)}
    doc["distribution"] = [[round(float(v), 8) for v in row] for row in distribution]
    return doc


def write_workload(path: str | Path, doc: dict) -> Path:
    """Write a workload document as YAML, atomically."""
    from melange.files import atomic_write_text

    return atomic_write_text(path, yaml.safe_dump(doc, sort_keys=False, width=200, default_flow_style=None))


def resolve_workload_path(name: str, base: Path | None = None) -> Path:
    """A workload file: as given, relative to `base`, or a built-in one named by stem."""
    candidates = [Path(name)] + ([base / name] if base is not None else [])
    candidates += [BUILTIN_WORKLOADS / name, BUILTIN_WORKLOADS / f"{name}.yaml"]
    for path in candidates:
        if path.is_file():
            return path
    builtin = ", ".join(sorted(p.stem for p in BUILTIN_WORKLOADS.glob("*.yaml")))
    raise MelangeError(f"workload.distribution.file: '{name}' not found (built-in workloads: {builtin})")


def load_workload_file(name: str, grid: BucketGrid, base: Path | None = None) -> np.ndarray:
    """The distribution of a workload file; its grid must be the scenario's."""
    path = resolve_workload_path(name, base)
    doc = read_document(path)
    g = doc.get("grid")
    edges = (tuple(g.get("input_edges", ())), tuple(g.get("output_edges", ()))) if isinstance(g, dict) else None
    if edges != (grid.in_edges, grid.out_edges):
        raise MelangeError(f"workload.distribution.file: {path.name} uses another bucket grid than the scenario")
    try:
        table = np.asarray(doc["distribution"], dtype=float)
    except (KeyError, TypeError, ValueError):
        raise MelangeError(f"workload.distribution.file: {path.name} has no numeric 'distribution' table") from None
    if table.shape != grid.shape or not np.all(np.isfinite(table)) or np.any(table < 0) or table.sum() <= 0:
        raise MelangeError(f"workload.distribution.file: {path.name} distribution must be a "
                           f"{grid.shape[0]}x{grid.shape[1]} table of shares >= 0")
    return table / table.sum()
