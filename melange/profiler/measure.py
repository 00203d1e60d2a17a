"""The whole job behind `melange profile --url/--serve/--from-results`: measure a server (started
first when asked) or import existing results, fit the step model, and make the Profile document."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

from melange.core import BucketGrid, EngineConfig, MelangeError, Slo
from melange.profiler.client import Target, preflight, words_per_token
from melange.profiler.launcher import ServerProcess
from melange.profiler.results_import import import_results
from melange.profiler.run import NoProgress, RunResult, fit_points, profile_yaml_doc, run_profile
from melange.profiler.search import SearchSettings


def measure_profile(gpu: str, model: str, grid: BucketGrid, slo: Slo, settings: SearchSettings, *,
                    engine: EngineConfig, catalog, target: Target | None = None, serve_cmd: str | None = None,
                    from_results: str | Path | None = None, store_path: str | Path | None = None,
                    buckets: list[tuple[int, int]] | None = None, cost: float | None = None,
                    progress: NoProgress | None = None) -> tuple[dict, RunResult, object]:
    """Measure the server at `target` (started first by `serve_cmd`, if given; resumable
    through `store_path`) or import `from_results`: (Profile document with the fitted step
    model, the run, the fit or None)."""
    if (target is None) == (from_results is None):
        raise MelangeError("profile: give a server to measure or results to import, not both or neither")
    if from_results is not None:
        result = import_results(from_results, gpu, grid, slo, settings)
        extra = {"from_results": str(from_results)}
    else:
        with ServerProcess(serve_cmd, target.url) if serve_cmd else contextlib.nullcontext():
            warnings = []
            if target.prompt == "text":
                ratio = words_per_token(target.url, target.api_key)
                if ratio is None:  # said, not silent: the lengths sent are then guesses
                    warnings.append("--prompt text: the server has no /tokenize, so prompts assume one word per "
                                    "token and their real lengths may fall in other buckets (the server's own counts "
                                    "are what is recorded)")
                target = dataclasses.replace(target, words_per_token=ratio or 1.0)
            preflight(target)  # down, not HTTP, or refusing our requests: say so before the search
            result = run_profile(target, grid, slo, settings, store_path, buckets=buckets, progress=progress)
        extra = {"url": target.url, "api": target.api, "prompt": target.prompt, "time_scale": target.time_scale,
                 "store": str(store_path), "seed": settings.params.seed, **({"warnings": warnings} if warnings else {})}
    fit = None
    try:
        from melange.perf.roofline import kv_capacity_tokens

        kv = int(kv_capacity_tokens(catalog.model(model), catalog.instance(gpu), engine))
        fit = fit_points(result.records, kv)
    except MelangeError:  # GPU or model not in the catalog: no KV capacity to fit with
        pass
    return profile_yaml_doc(result, model, slo, grid, fit=fit, cost=cost, **extra), result, fit
