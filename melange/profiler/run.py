"""A whole measured profile: for every bucket, probe, search the rate, log everything; then fit.

`profile_server` drives the client, the search and the run log; `fit_points` fits the linear
step model (`melange.perf.fit`) to the records, point by point (each point is its own run with
its own clock, so step samples are rebuilt per point and fitted together); `profile_yaml_doc`
writes the Profile in the same shape as the sim-profiles (`profile_sim.profile_document`).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd

from melange.core import BucketGrid, MelangeError, Profile, Slo
from melange.profiler.client import Job, Target, run_jobs, send
from melange.profiler.schedule import bucket_jobs, mid_bucket
from melange.profiler.search import SearchSettings, judge_point, point_plan
from melange.profiler.store import RunStore, rate_key, record_rows
from melange.rate_search import Trial, run_search_async, search


@dataclass
class RunResult:
    """The profile, every finished point's verdict, and the records of each point."""

    profile: Profile
    points: list[dict] = field(default_factory=list)
    records: dict[tuple[int, int, str], list[dict]] = field(default_factory=dict)
    reasons: dict[tuple[int, int], str] = field(default_factory=dict)  # why a bucket got 0


class NoProgress:
    """The progress interface `profile_server` reports to (all no-ops)."""

    def point_started(self, bucket: tuple[int, int], trial: Trial, n: int) -> None: ...
    def record(self, failed: bool) -> None: ...
    def point_done(self, bucket: tuple[int, int], trial: Trial, verdict: dict, reused: bool) -> None: ...
    def bucket_done(self, bucket: tuple[int, int], rate: float) -> None: ...


def run_config(target: Target, grid: BucketGrid, slo: Slo, settings: SearchSettings) -> dict:
    """What must match for a run log to be resumed."""
    return {"gpu": target.gpu, "model": target.model, "api": target.api, "prompt": target.prompt,
            "time_scale": target.time_scale,
            "slo": [slo.tpot_ms, slo.definition, slo.ttft_ms, slo.attainment, *([slo.e2e_ms] if slo.e2e_ms else [])],
            "grid": [list(grid.in_edges), list(grid.out_edges)], "search": settings.as_dict()}


async def _probe(target: Target, grid: BucketGrid, i: int, j: int) -> tuple[float, str | None]:
    """A lone mid-bucket request's e2e (GPU seconds), and why it failed (None when it did not)."""
    inp, out = mid_bucket(grid, i, j)
    async with aiohttp.ClientSession() as session:
        rec = await send(session, target, Job(0, 0.0, inp, out, i, j), time.perf_counter())
    return (float("inf"), rec.error) if rec.error else (float(rec.e2e_s), None)


NOT_MEASURED = "not measured (--buckets left it out)"


def server_refused(error: str) -> bool:
    """Whether a failed request was answered by the server (an HTTP error status: a measurement of
    the server, e.g. a request too long for it) rather than lost (connection, timeout: not one)."""
    return error.lower().startswith("http")


async def measure_point(target: Target, grid: BucketGrid, slo: Slo, settings: SearchSettings, i: int, j: int,
                        trial: Trial, on_record=None) -> tuple[dict, list]:
    """One load test of bucket (i, j) at the trial's rate (GPU req/s): (verdict, records). A
    confirming trial is longer and draws from seed + 1 (traffic the search never saw)."""
    n, warmup_s = point_plan(settings, slo, grid, j, trial)
    seed = settings.params.trial_seed(trial)
    rng = np.random.default_rng([seed, i, j, int(round(trial.rate * 1e6))])
    jobs = bucket_jobs(grid, i, j, trial.rate, n, rng, process=settings.process, cv=settings.cv,
                       time_scale=target.time_scale, seed=seed)
    counts = [0, 0]  # finished, failed

    def seen(rec) -> None:
        counts[0] += 1
        counts[1] += rec.error is not None
        if on_record is not None:
            on_record(rec)

    def stop() -> bool:  # rising errors: stop sending, the point has failed anyway
        return counts[0] >= 50 and counts[1] > max(20, 2 * settings.max_error_share * counts[0])

    recs = await run_jobs(target, jobs, seen, stop)
    verdict = judge_point(recs, slo, settings, warmup_s)
    if len(recs) < n:
        verdict.update(passed=False, reason=f"stopped after {len(recs)} of {n} requests: {counts[1]} failed")
    return verdict, recs


async def profile_server(target: Target, grid: BucketGrid, slo: Slo, settings: SearchSettings,
                         store_path: str | Path, *, buckets: list[tuple[int, int]] | None = None,
                         progress: NoProgress | None = None) -> RunResult:
    """Search every bucket's max rate on the server at `target`; resumable through `store_path`."""
    progress = progress or NoProgress()
    store = RunStore(store_path, run_config(target, grid, slo, settings))
    rates = np.zeros(grid.shape)
    result = RunResult(Profile(target.gpu, rates, source="measured"))
    try:
        todo = buckets or [(i, j) for i in range(grid.shape[0]) for j in range(grid.shape[1])]
        for cell in {(i, j) for i in range(grid.shape[0]) for j in range(grid.shape[1])} - set(todo):
            result.reasons[cell] = NOT_MEASURED  # a 0 that is not "cannot serve": said so in the file
        for i, j in todo:
            if (i, j) not in store.probes:
                latency, error = await _probe(target, grid, i, j)
                if error is not None and not server_refused(error):  # lost, not answered: never cached
                    raise MelangeError(f"--url {target.url}: bucket {grid.label(i, j)}: a lone request got no "
                                       f"answer ({error}); nothing of this bucket is kept, re-run to resume")
                store.probe(i, j, latency)
                if error is not None:
                    result.reasons[(i, j)] = f"a lone mid-bucket request failed: {error}"
            latency = store.probes[(i, j)]
            if not np.isfinite(latency) or latency <= 0:
                result.reasons.setdefault((i, j), "a lone mid-bucket request failed (an HTTP error from the server)")
                progress.bucket_done((i, j), 0.0)
                continue

            async def measure(trial: Trial, i: int = i, j: int = j) -> tuple[bool, float | None]:
                key = rate_key(trial.rate, trial.confirm)
                if (i, j, key) in store.points:
                    verdict = store.points[(i, j, key)]
                    progress.point_done((i, j), trial, verdict, True)
                    return bool(verdict["passed"]), verdict.get("attainment")
                store.start(i, j, key)
                progress.point_started((i, j), trial, point_plan(settings, slo, grid, j, trial)[0])

                def on_record(rec) -> None:
                    store.record(i, j, key, rec)
                    progress.record(rec.error is not None)

                verdict, recs = await measure_point(target, grid, slo, settings, i, j, trial, on_record)
                if trial.confirm:  # the band the search holds a confirming trial to, for the display
                    verdict["guard"] = settings.params.strict(slo.attainment)
                store.point(i, j, key, verdict, recs)
                progress.point_done((i, j), trial, verdict, False)
                return bool(verdict["passed"]), verdict.get("attainment")

            # From 4x the rate of one request in flight: the lowest rates are the slowest to measure.
            steps = search(4.0 / latency, settings.params, slo.attainment, settings.params.confirmations(slo))
            rates[i, j] = await run_search_async(steps, measure)
            progress.bucket_done((i, j), rates[i, j])
    finally:
        store.flush()  # records already handed to the writer reach the disk, even on Ctrl-C
    for key, line in store.points.items():
        result.points.append(line)
        result.records[key] = store.records.get(key, [])
    return result


def run_profile(*args, **kwargs) -> RunResult:
    """`profile_server` from synchronous code."""
    return asyncio.run(profile_server(*args, **kwargs))


def fit_points(records: dict[tuple[int, int, str], list[dict]], kv_capacity_tokens: int):
    """Least-squares step model from every point's records (None if too few usable ones)."""
    from melange.perf.fit import fit_steps, samples_from_records

    samples = []
    for rows in records.values():
        frame = pd.DataFrame(record_rows(rows))
        ok = frame[frame["error"].isna() & (frame["output_tokens"] >= 2)]
        if len(ok) < 2:
            continue
        try:
            samples.append(samples_from_records(ok))
        except MelangeError:
            continue
    if not samples:
        return None
    try:
        return fit_steps(pd.concat(samples, ignore_index=True), kv_capacity_tokens)
    except MelangeError:
        return None


def profile_yaml_doc(result: RunResult, model: str, slo: Slo, grid: BucketGrid, *, fit=None,
                     cost: float | None = None, **extra) -> dict:
    """The Profile document (sim-profile shape) plus how it was measured and the fitted model."""
    from melange.perf.profile_sim import profile_document

    more: dict = {}
    if cost is not None:
        more["cost"] = cost
    unmeasured = sorted(k for k, why in result.reasons.items() if why == NOT_MEASURED)
    more["measured"] = {**extra, "points": sum("bucket" in p for p in result.points),
                        "skipped": [f"{p.get('file', '')}: {p['reason']}" for p in result.points if "bucket" not in p],
                        "zero_buckets": {f"{i},{j}": why for (i, j), why in result.reasons.items()
                                         if why != NOT_MEASURED},
                        "unmeasured": [list(k) for k in unmeasured]}
    if fit is not None:
        m = fit.model
        more["step_model"] = {"alpha": m.alpha, "beta_prefill": m.beta_prefill, "beta_decode": m.beta_decode,
                              "beta_kv": m.beta_kv, "kv_capacity_tokens": m.kv_capacity_tokens,
                              "rmse_s": fit.rmse_s, "r2": fit.r2, "samples": fit.samples}
    return profile_document(result.profile, model, slo, grid, **more)
