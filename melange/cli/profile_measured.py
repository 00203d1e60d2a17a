"""The measured sources of `melange profile` (--url, --serve, --from-results): options checked,
then `melange.profiler.measure.measure_profile`, then the file written."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from pathlib import Path

import click
import yaml

from melange.cli.options import parse_duration
from melange.core import BucketGrid, EngineConfig, MelangeError, Slo
from melange.files import atomic_write_text, check_writable
from melange.perf.catalog import Catalog

DEFAULT_URL = "http://127.0.0.1:8000"


def parse_buckets(text: str | None, grid: BucketGrid) -> list[tuple[int, int]] | None:
    """'0,0;2,1' -> [(0, 0), (2, 1)], checked against the grid."""
    if text is None:
        return None
    out = []
    for part in text.split(";"):
        try:
            i, j = (int(v) for v in part.split(","))
        except ValueError:
            raise MelangeError(f"--buckets: '{part}' is not 'i,j'") from None
        if not (0 <= i < grid.shape[0] and 0 <= j < grid.shape[1]):
            raise MelangeError(f"--buckets: ({i},{j}) is outside the {grid.shape[0]}x{grid.shape[1]} grid")
        out.append((i, j))
    return out


def measured_profile(*, gpu: str, model: str, slo: Slo, grid: BucketGrid, catalog: Catalog, seed: int,
                     output: str, quiet: bool, engine: EngineConfig, url: str | None, serve_cmd: str | None,
                     from_results: str | None, served_model_name: str | None, api: str, prompt_mode: str,
                     time_scale: float, timeout_text: str, store: str | None, cost: float | None,
                     bucket_text: str | None, rel_tol: float, arrival: str, cv: float, max_requests: int,
                     min_window_text: str, confirm_requests: int, api_key: str | None) -> None:
    """Measure (or import) a profile and write it, with the fitted step model, to `output`."""
    from melange.profiler.client import Target
    from melange.profiler.measure import measure_profile
    from melange.profiler.progress import RichProgress
    from melange.profiler.run import NoProgress
    from melange.profiler.search import MEASURED, SearchSettings

    for name, value in (("--time-scale", time_scale), ("--rel-tol", rel_tol), ("--cv", cv),
                        ("--max-requests", max_requests), ("--confirm-requests", confirm_requests)):
        if not value > 0:
            raise MelangeError(f"{name}: must be > 0, got {value}")
    if cost is not None and cost < 0:
        raise MelangeError(f"--cost: must be >= 0, got {cost}")
    if api == "chat" and prompt_mode == "ids":
        prompt_mode = "text"  # the chat API takes no token ids
    buckets = parse_buckets(bucket_text, grid)
    params = dataclasses.replace(MEASURED, rel_tol=rel_tol, max_requests=max_requests, seed=seed,
                                 min_window_s=parse_duration(min_window_text, "--min-window", allow_zero=True),
                                 confirm_requests=confirm_requests)
    settings = SearchSettings(params, process=arrival, cv=cv)
    check_writable(output)
    store_path = Path(store) if store else Path(output).with_suffix(".jsonl")
    start = time.perf_counter()
    target = None
    if from_results is None:
        check_writable(store_path, "--store")
        target = Target(url or DEFAULT_URL, served_model_name or model, api=api, prompt=prompt_mode,
                        timeout_s=parse_duration(timeout_text, "--timeout"), time_scale=time_scale,
                        api_key=api_key, gpu=gpu)
    display = RichProgress(gpu) if not quiet and from_results is None else contextlib.nullcontext(NoProgress())
    with display as progress:
        doc, result, fit = measure_profile(gpu, model, grid, slo, settings, engine=engine, catalog=catalog,
                                           target=target, serve_cmd=serve_cmd, from_results=from_results,
                                           store_path=store_path, buckets=buckets, cost=cost, progress=progress)
    for warning in doc.get("measured", {}).get("warnings", []):
        click.echo(f"warning: {warning}", err=True)
    if not any("bucket" in p for p in result.points):  # nothing measured: no profile of zeros with exit 0
        why = "; ".join(sorted({w for w in result.reasons.values()} | {p["reason"] for p in result.points
                                                                       if p.get("reason")})) or "no load test ran"
        source = f"--from-results {from_results}: no benchmark in it could be read" if from_results else \
            f"--url {target.url}: no bucket could be measured"
        raise MelangeError(f"{source} ({why[:300]})")
    atomic_write_text(output, yaml.safe_dump(doc, sort_keys=False, width=120))
    served = int((result.profile.max_rate > 0).sum())
    fitted = "step model fitted" if fit is not None else "no step model (too few records or GPU/model not in catalog)"
    click.echo(f"{output}: {gpu} × {model}, {served}/{result.profile.max_rate.size} buckets served, "
               f"{len(result.points)} points, {fitted}, {time.perf_counter() - start:.1f} s")
