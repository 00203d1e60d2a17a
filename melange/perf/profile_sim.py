"""Sim-profiles: a GPU profile (max req/s per bucket under the SLO) without hardware.

For each bucket, simulate ONE instance serving only that bucket's requests (Poisson arrivals;
lengths drawn from the workload's trace inside the bucket when a trace is given, else uniform in
the bucket) and find the highest rate that passes `melange.acceptance.judge`,
the one rule every load test in Mélange is judged by: the system is stable (departures keep pace
with arrivals, the queue late in the run no longer than mid-run), enough requests are counted to
tell the target (`rule.min_counted`), and the SLO attainment after warm-up meets the target.

Trials and the search (bracket, bisect, then a longer confirmation on a fresh seed with a guard
band, stepping down until it passes) are `melange.rate_search`'s, shared with the measured
profiler. A bucket whose largest request cannot fit (KV capacity or the engine's max model length)
gets 0, as does one that fails even nearly idle.

The table is made monotone after the search (`perf/monotone.py`): a bucket of requests no longer
in either length than another's never gets a lower rate, and no cell is published above the rate
its own search saw hold; under the paper's averaged rule it also keeps a stability guard band.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from melange.acceptance import DEFAULT_RULE, AcceptanceRule, Verdict, judge
from melange.core import (
    BucketGrid,
    EngineConfig,
    MelangeError,
    Plan,
    Profile,
    Slo,
    StepTimeModel,
    Workload,
)
from melange.keys import code_digest, digest
from melange.metrics import slo_means, to_frame
from melange.perf.catalog import Catalog, Instance, ModelSpec, load_catalog
from melange.perf.monotone import published
from melange.perf.roofline import RooflineParams, roofline_model
from melange.rate_search import SearchParams, Trial, run_search, search, slo_bound_s
from melange.traces import load_trace, resolve_trace_path

CODE_FILES = ("core.py", "metrics.py", "acceptance.py", "rate_search.py", "sim/*.py", "perf/catalog.py",
              "perf/roofline.py", "perf/profile_sim.py")
RULE_TEXT = ("melange.acceptance.judge on one instance fed only the bucket (Poisson, lengths from "
             "the trace inside the bucket, else uniform): stable, >= min_counted requests after warm-up, attainment >= target; "
             "confirmed on 4x longer trials of >= 10,000 arrivals on two fresh seeds (one under mean_itl), each at "
             "half the allowed misses, else 5 % lower; then monotone (perf/monotone.py), and under mean_itl x 0.9 "
             "(stability guard band)")


def cache_dir(path: str | Path | None = None) -> Path:
    """The cache directory: `path`, else $MELANGE_CACHE, else ~/.cache/melange."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("MELANGE_CACHE") or Path.home() / ".cache" / "melange")


def code_version() -> str:
    """Hash of the package version and of the source the profiles depend on."""
    return code_digest(CODE_FILES)


# --- one bucket -----------------------------------------------------------------------------

@dataclass(frozen=True)
class BucketJob:
    """Everything one bucket's search needs (picklable, for worker processes)."""

    gpu: str
    step_model: StepTimeModel
    engine: EngineConfig
    slo: Slo
    grid: BucketGrid
    i: int
    j: int
    max_len: int
    search: SearchParams
    trace: str | None = None  # a trace file whose requests in the bucket give the lengths


def trial(job: BucketJob, rate: float, *, confirm: bool = False, seed: int | None = None, scale: float = 1.0,
          requests: int | None = None, min_requests: int = 0, rule: AcceptanceRule = DEFAULT_RULE) -> Verdict:
    """Judge one instance serving only this bucket at `rate` req/s (see the module docstring);
    `confirm`: the search's confirming trial (its length and seed); `requests`: instead of the
    search's trial length, about this many arrivals in all; `min_requests`: a window of at least
    this many expected arrivals."""
    from melange.sim import (  # the simulator is optional for the rest of perf/
        Simulation,
        make_arrivals,
    )

    latency = slo_bound_s(job.slo, job.grid.out_edges[job.j + 1] - 1)  # the slowest request's
    need = rule.min_counted(job.slo.attainment)
    if requests is not None:
        warmup_s = min(job.search.warmup * latency, 0.2 * requests / rate)  # at most a fifth of the run
        window_s = requests / rate - warmup_s
    elif confirm:
        warmup_s, window_s = job.search.trial_span(Trial(rate, confirm=1), latency, need)
    else:
        warmup_s, window_s = job.search.span(latency, rate, need, scale=scale, min_requests=min_requests)
    if seed is None:
        seed = job.search.trial_seed(Trial(rate, confirm))
    end_s = warmup_s + window_s
    onehot = np.zeros(job.grid.shape)
    onehot[job.i, job.j] = 1.0
    workload = Workload(job.grid, onehot, rate, lengths="trace" if job.trace else "uniform", trace=job.trace)
    plan = Plan(counts={job.gpu: 1}, share={job.gpu: onehot}, cost=0.0)
    rng = np.random.default_rng(seed)
    arrivals = make_arrivals(workload, rng, duration_s=end_s)
    sim = Simulation(plan, arrivals, workload, {job.gpu: job.step_model}, {job.gpu: job.engine}, rng)
    sim.run(until=end_s + latency)  # a request still in flight then has surely missed
    arrival, finish = sim.departures()
    frame = to_frame(sim.records(), job.slo)
    order = frame["request_id"].to_numpy()
    met = np.zeros(len(arrival), dtype=bool)
    met[order] = frame["slo_met"].to_numpy()
    means = slo_means(frame, job.slo)
    if means is not None:  # aligned with the arrivals; requests never finished stay NaN
        aligned = {k: np.full(len(arrival), np.nan) for k in ("decode_s", "gaps", "ttft_s")}
        for k, v in aligned.items():
            v[order] = getattr(means, k)
        means = replace(means, **aligned)
    return judge(arrival, finish, met, job.slo.attainment, warmup_s=warmup_s, end_s=end_s, rule=rule,
                 means=means)


def bucket_fits(job: BucketJob) -> bool:
    """Whether the bucket's largest request (the trace's, when it has some there) fits the KV
    cache and the max model length."""
    largest = job.grid.in_edges[job.i + 1] - 1 + job.grid.out_edges[job.j + 1] - 1
    if job.trace:
        t = load_trace(job.trace)
        bi, bo = job.grid.bucket_of(t.input_tokens, t.output_tokens)
        mine = (bi == job.i) & (bo == job.j)
        if mine.any():
            largest = int(np.max(t.input_tokens[mine] + t.output_tokens[mine]))
    return largest <= min(job.step_model.kv_capacity_tokens, job.max_len)


def _first_guess(job: BucketJob) -> float:
    """A rate with about one request in flight: 1 / latency of a mid-bucket request alone."""
    g, m = job.grid, job.step_model
    inp = (g.in_edges[job.i] + g.in_edges[job.i + 1]) / 2
    out = (g.out_edges[job.j] + g.out_edges[job.j + 1]) / 2
    latency = m.step_time(int(inp), 0, 0) + out * m.step_time(0, 1, int(inp + out / 2))
    return 1.0 / max(latency, 1e-6)


def search_bucket(job: BucketJob) -> float:
    """Highest req/s at which one instance passes the acceptance rule on this bucket (0 if none)."""
    if not bucket_fits(job):
        return 0.0

    def measure(t: Trial) -> tuple[bool, float | None]:
        v = trial(job, t.rate, confirm=t.confirm)
        return v.passed, v.attainment

    steps = search(_first_guess(job), job.search, job.slo.attainment, job.search.confirmations(job.slo))
    return run_search(steps, measure)


def _read_cached(path: Path | None, notify) -> float | None:
    """A cached bucket's rate; an empty or corrupt entry is removed (with a warning naming it)
    so that it is recomputed, never failing forever."""
    if path is None or not path.is_file():
        return None
    try:
        rate = float(json.loads(path.read_text())["max_rate"])
        if rate >= 0 and np.isfinite(rate):
            return rate
    except (OSError, ValueError, KeyError, TypeError):
        pass
    notify(f"warning: cache entry {path} is empty or corrupt; recomputing it")
    path.unlink(missing_ok=True)
    return None


def _worker_init() -> None:
    """Worker processes leave Ctrl-C to the parent (which stops them) and die with it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT, signal.SIGTERM})  # blocked by the parent at fork
    try:  # Linux: SIGTERM this worker if the parent dies without cleaning up (e.g. SIGKILL)
        import ctypes

        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Stop a pool now: cancel queued buckets and terminate running workers (no orphans)."""
    processes = list((pool._processes or {}).values())  # noqa: SLF001 (no public way to kill)
    pool.shutdown(wait=False, cancel_futures=True)
    for proc in processes:
        proc.terminate()
    for proc in processes:
        proc.join(timeout=1.0)
        if proc.is_alive():
            proc.kill()


def _cached_search(job: BucketJob, path: Path | None) -> float:
    rate = search_bucket(job)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"max_rate": rate, "gpu": job.gpu, "bucket": [job.i, job.j]}))
        tmp.replace(path)  # atomic: parallel runs never read half a file
    return rate


# --- a whole profile --------------------------------------------------------------------------

def build_profile(gpu: str | Instance, model: str | ModelSpec, slo: Slo, grid: BucketGrid, *,
                  engine: EngineConfig | None = None, catalog: Catalog | None = None,
                  roofline: RooflineParams | None = None, step_model: StepTimeModel | None = None,
                  search: SearchParams | None = None, workers: int | None = None,
                  cache: str | Path | bool | None = None, progress: bool = False,
                  trace: str | Path | None = None, notify=lambda message: None) -> Profile:
    """Max req/s per bucket of one `gpu` instance serving `model` under `slo`, by simulation.

    `step_model` overrides the roofline (e.g. a fitted model); `trace`: lengths inside each bucket
    from this trace's requests there (buckets it never visits: uniform); `cache`: a directory, None for
    the default one, False for none; `workers`: processes (default: all cores); `notify(text)`
    hears about resumed, recomputed and (on Ctrl-C/SIGTERM) kept buckets. Each bucket is cached
    as it finishes, so an interrupted run keeps its finished buckets and a re-run resumes."""
    catalog = catalog or load_catalog()
    instance = catalog.instance(gpu) if isinstance(gpu, str) else gpu
    spec = catalog.model(model) if isinstance(model, str) else model
    engine = engine or EngineConfig()
    roofline = roofline or RooflineParams()
    step_model = step_model or roofline_model(instance, spec, engine, roofline, catalog)
    search = search or SearchParams()
    max_len = engine.max_model_len or spec.max_context
    engine = replace(engine, max_model_len=max_len)  # the model's context, enforced in the sim
    trace = None if trace is None else str(resolve_trace_path(trace))
    jobs = [BucketJob(instance.name, step_model, engine, slo, grid, i, j, max_len, search, trace)
            for i in range(grid.shape[0]) for j in range(grid.shape[1])]

    paths: list[Path | None] = [None] * len(jobs)
    if cache is not False:
        root = cache_dir(None if cache in (None, True) else cache) / "sim-profiles"
        common = {"instance": instance, "model": spec, "step_model": step_model, "engine": engine,
                  "slo": slo, "search": search, "max_len": max_len, "code": code_version(),
                  "trace": None if trace is None else hashlib.sha256(Path(trace).read_bytes()).hexdigest()}
        paths = [root / f"{digest({**common, 'in': grid.in_edges[j.i:j.i + 2], 'out': grid.out_edges[j.j:j.j + 2]})}.json"
                 for j in jobs]

    rates = np.zeros(grid.shape)
    todo = []
    for k, job in enumerate(jobs):
        cached = _read_cached(paths[k], notify)
        if cached is None:
            todo.append((k, job))
        else:
            rates[job.i, job.j] = cached
    if todo and len(todo) < len(jobs):
        notify(f"resuming: {len(jobs) - len(todo)}/{len(jobs)} buckets from the cache, {len(todo)} to go")
    done = [len(jobs) - len(todo)]
    try:
        _run(jobs, todo, paths, rates, workers, done, progress, f"{instance.name} × {spec.name}")
    except KeyboardInterrupt:
        kept = (f"kept in the cache ({root}); re-run the same command to resume" if cache is not False
                else "not kept (--no-cache)")
        notify(f"stopped: {done[0]}/{len(jobs)} buckets finished, {kept}")
        raise
    return Profile(instance.name, published(rates, slo.per_request), source="simulated")


def _run(jobs, todo, paths, rates, workers, done, progress, label) -> None:
    """Search every bucket of `todo` (in worker processes), filling `rates`; `done[0]` counts."""
    with _progress(progress, len(jobs), label) as advance:
        advance(len(jobs) - len(todo))
        workers = min(workers or os.cpu_count() or 1, max(len(todo), 1))
        if workers <= 1:
            for k, job in todo:
                rates[job.i, job.j] = _cached_search(job, paths[k])
                done[0] += 1
                advance(1)
        else:
            pool = ProcessPoolExecutor(workers, initializer=_worker_init)
            try:
                # Costly buckets (long outputs) first, so the last worker is not left alone.
                order = sorted(todo, key=lambda kj: -(kj[1].grid.out_edges[kj[1].j + 1]))
                # Ctrl-C/SIGTERM held while the workers are forked: a signal landing inside the
                # fork's lock handling was swallowed ("Exception ignored in _releaseLock") and the
                # run went on; held, it is raised right after, here, and stops the pool.
                held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
                try:
                    futures = {pool.submit(_cached_search, job, paths[k]): job for k, job in order}
                finally:
                    signal.pthread_sigmask(signal.SIG_SETMASK, held)
                for fut in as_completed(futures):
                    job = futures[fut]
                    rates[job.i, job.j] = fut.result()
                    done[0] += 1
                    advance(1)
            except BaseException:
                _stop_pool(pool)  # at once: waiting for running buckets took 14-16 s
                raise
            pool.shutdown()


class _progress:
    """A rich progress bar over buckets (or nothing); yields an `advance(n)` callable."""

    def __init__(self, show: bool, total: int, label: str) -> None:
        self.show, self.total, self.label = show, total, label
        self.bar = None

    def __enter__(self):
        if not self.show:
            return lambda n: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self.bar = Progress("[progress.description]{task.description}", BarColumn(),
                            MofNCompleteColumn(), TimeElapsedColumn(), transient=False)
        self.bar.start()
        task = self.bar.add_task(self.label, total=self.total)
        return lambda n: self.bar.advance(task, n)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


def profile_document(profile: Profile, model: str, slo: Slo, grid: BucketGrid, **extra) -> dict:
    """The YAML/JSON form of a sim-profile; the scenario loader reads `max_rate` and `source`."""
    if profile.max_rate.shape != grid.shape:
        raise MelangeError("profile: max_rate does not match the grid")
    return {
        "gpu": profile.gpu,
        "model": model,
        "slo": {"tpot_ms": slo.tpot_ms, "definition": slo.definition, "ttft_ms": slo.ttft_ms, "e2e_ms": slo.e2e_ms,
                "attainment": slo.attainment},
        "source": profile.source,
        "grid": {"input_edges": list(grid.in_edges), "output_edges": list(grid.out_edges)},
        **extra,
        "max_rate": [[round(float(v), 4) for v in row] for row in profile.max_rate],
    }
