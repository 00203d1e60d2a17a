"""One plan on one seed, judged by the acceptance rule; confirmation over several fresh seeds.

A run is judged by `melange.acceptance.judge` (stable, enough counted requests, attainment at
least the target) and, pooled over the runs of a confirmation, by the **per-bucket floor**: every
bucket with at least `BUCKET_MIN_REQUESTS` counted requests must have the upper end of the 95 %
Wilson interval of its attainment at or above the target. A bucket may sit a little below the
target by chance, but not so far that its own requests rule the target out; a sparse bucket's
interval is wide, so one unlucky miss never fails a plan.

The warm-up never swallows the run: its arrivals (ceil(rate x warmup_s) of them, or warmup_s
seconds for a duration) come on top of the requests (or duration) asked for, so `requests=1000`
counts exactly 1,000 requests whatever the warm-up; asking for fewer than the acceptance rule needs
is refused before any simulation.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import pandas as pd

from melange.acceptance import (
    DEFAULT_RULE,
    AcceptanceRule,
    Verdict,
    batch_counts,
    batch_interval,
    judge,
    overdispersion,
    wilson_interval,
)
from melange.core import MelangeError, Plan
from melange.metrics import slo_means
from melange.scenario import Scenario
from melange.sim import make_arrivals, simulate
from melange.sim.arrivals import DEFAULT_REQUESTS

BUCKET_MIN_REQUESTS = 30  # buckets with fewer counted requests are not held to the floor
MAX_REASONS = 5  # low buckets named in a confirmation's reasons
STABILITY_ONLY = AcceptanceRule(min_requests=1, expected_misses=0.0)  # with target 0: stability alone


@dataclass(frozen=True)
class RunSettings:
    """How much traffic one run simulates and what it counts (the same for every run of a study)."""

    requests: int | None  # counted requests asked for (after the warm-up)
    duration_s: float | None  # counted traffic asked for (after the warm-up)
    warmup_s: float
    expected_counted: int
    router: str = "least_work"
    rule: AcceptanceRule = DEFAULT_RULE
    extra_requests: int = 0  # the warm-up: ceil(rate x warmup_s) arrivals before the counted ones

    @property
    def sim_requests(self) -> int | None:
        """Requests to simulate: the warm-up's on top of the counted ones."""
        return None if self.requests is None else self.requests + self.extra_requests

    @property
    def sim_duration_s(self) -> float | None:
        """Arrival span to simulate: the warm-up on top of the counted traffic."""
        return None if self.duration_s is None else self.duration_s + self.warmup_s

    def window_start(self, arrival_s: np.ndarray) -> float:
        """When counting starts in a run: after its first `extra_requests` arrivals when the run is
        bounded by requests (so exactly `requests` are counted), else at `warmup_s`."""
        if self.requests is not None and 0 < self.extra_requests < len(arrival_s):
            return float(arrival_s[self.extra_requests])
        return self.warmup_s


def run_settings(sc: Scenario, *, requests: int | None = None, duration_s: float | None = None,
                 rule: AcceptanceRule = DEFAULT_RULE) -> RunSettings:
    """Resolve the traffic bound (the caller's replaces the scenario's), put the warm-up on top of
    it, and refuse up front (MelangeError) when too few requests would be counted to judge."""
    sim = sc.simulation
    if requests is None and duration_s is None:
        requests, duration_s = sim.requests, sim.duration_s
    if requests is None and duration_s is None:  # the whole trace once, or the simulator's default
        replay = sc.workload.arrival.process == "trace"
        requests = len(make_arrivals(sc.workload, np.random.default_rng(0))) if replay else DEFAULT_REQUESTS
    rate = sc.workload.rate
    expected = min(n for n in (requests, None if duration_s is None else int(rate * duration_s)) if n is not None)
    settings = RunSettings(requests, duration_s, sim.warmup_s, expected, sim.router, rule,
                           math.ceil(rate * sim.warmup_s))
    if sc.slo is not None and expected < rule.min_counted(sc.slo.attainment):
        raise MelangeError(too_few_message(settings, expected, rule.min_counted(sc.slo.attainment), rate))
    if sc.slo is not None:
        check_window(sc, expected)
    return settings


WINDOW_LATENCIES = 2.0  # a counted window spans at least this many mean request latencies
LOADED = 4.0  # a loaded request takes at most this many times its time alone (for the estimate)


def check_window(sc: Scenario, expected: int) -> None:
    """Refuse a run whose counted window is too short for its requests to be served in it: with
    requests that take longer than the window, the fleet never reaches a steady state and a sound
    plan reads as unstable (40 req/s, 1,000 counted: 25 s against ~200 s requests)."""
    from melange.rate_search import slo_bound_s

    w, g = sc.workload, sc.workload.grid
    rates = w.bucket_rates()
    ins, outs = np.asarray(g.in_edges, dtype=float), np.asarray(g.out_edges, dtype=float)
    inp, out = (ins[:-1] + ins[1:] - 1) / 2, (outs[:-1] + outs[1:] - 1) / 2  # a bucket's typical lengths
    # A request's latency: at most what the SLO allows, and (a loose SLO says little) at most
    # LOADED x its time alone on the slowest GPU type of the scenario.
    latency = np.array([[slo_bound_s(sc.slo, int(o)) for o in out] for _ in inp])
    alone = [np.array([[m.step_time(int(i), 0, 0) + max(o - 1, 0) * m.step_time(0, 1, int(i + o / 2)) for o in out]
                       for i in inp]) for m in sc.step_models.values()]
    if alone:
        latency = np.minimum(latency, LOADED * np.max(alone, axis=0))
    latency = float(np.sum(rates * latency) / max(rates.sum(), 1e-12))
    window = expected / w.rate
    if window < WINDOW_LATENCIES * latency:
        want = math.ceil(WINDOW_LATENCIES * latency * w.rate * 1.1)
        raise MelangeError(f"simulation: the counted window ({window:.0f} s: {expected:,} requests at {w.rate:g} req/s) "
                           f"is shorter than {WINDOW_LATENCIES:g} x this traffic's mean request latency "
                           f"({latency:.0f} s), so the fleet would not reach a steady state; raise --requests to "
                           f"{want:,} (or --duration to {math.ceil(want / w.rate)}s)")


def too_few_message(settings: RunSettings, counted: int, need: int, rate: float) -> str:
    """One line: how many were counted, how many are needed, what to raise."""
    want = -(-need * 11 // 10)  # 10 % above the need, for a duration's Poisson noise
    return (f"simulation: only {counted} requests would be counted after the {settings.warmup_s:g} s warm-up, "
            f"need {need} to judge the attainment target; raise --requests to {want} "
            f"(or --duration to {math.ceil(want / rate)}s)")


@dataclass
class RunCheck:
    """What one simulated run of a plan showed."""

    seed: int
    verdict: Verdict
    met: int  # counted requests that met the SLO
    buckets: pd.DataFrame  # bucket_in, bucket_out, requests, met (counted, inside the grid)
    cells: pd.DataFrame  # bucket_in, bucket_out, gpu, requests, met
    gpu_stability: dict[str, Verdict] = field(default_factory=dict)  # per GPU type, stability only
    floor_failures: list[dict] = field(default_factory=list)
    batches: np.ndarray | None = None  # (met, counted) per span of the window (acceptance.batch_counts)

    @property
    def passed(self) -> bool:
        """The acceptance rule held and no bucket is below the floor."""
        return self.verdict.passed and not self.floor_failures


def run_check(sc: Scenario, plan: Plan, seed: int, settings: RunSettings) -> RunCheck:
    """Simulate `plan` on `seed` and judge it (overall, per bucket, per GPU type's stability)."""
    target = sc.slo.attainment
    res = simulate(plan, sc.workload, sc.step_models, sc.engines, sc.slo, requests=settings.sim_requests,
                   duration_s=settings.sim_duration_s, seed=seed, router=settings.router,
                   warmup_s=settings.warmup_s)
    rec = res.records
    arrival = rec["arrival_s"].to_numpy(float)
    # A failed request (too long to ever fit) leaves the system when it arrives.
    finish = np.where(rec["error"].isna(), arrival + rec["e2e_s"].to_numpy(float), arrival)
    met = rec["slo_met"].to_numpy(bool)
    end = float(arrival.max()) if len(arrival) else 0.0
    start = settings.window_start(arrival)  # records are in arrival order
    means = slo_means(rec, sc.slo)
    verdict = judge(arrival, finish, met, target, warmup_s=start, end_s=end, rule=settings.rule, means=means)
    if verdict.reason.startswith("too few"):
        raise MelangeError(too_few_message(settings, verdict.counted, settings.rule.min_counted(target),
                                           sc.workload.rate))
    window = (arrival >= start) & (arrival <= end)
    inside = window & (rec["bucket_in"].to_numpy() >= 0) & (rec["bucket_out"].to_numpy() >= 0)
    counted = rec.assign(decode_s=0.0, gaps=0.0)
    if means is not None:  # sums of the averaged SLO's parts, so that pooled runs average right
        done = np.isfinite(means.decode_s)
        counted = counted.assign(decode_s=np.where(done, means.decode_s, 0.0), gaps=np.where(done, means.gaps, 0.0))
    counted = counted[inside]
    cells = (counted.groupby(["bucket_in", "bucket_out", "gpu"])
             .agg(requests=("slo_met", "size"), met=("slo_met", "sum"), decode_s=("decode_s", "sum"),
                  gaps=("gaps", "sum")).reset_index())
    buckets = cells.groupby(["bucket_in", "bucket_out"])[list(SUMMED)].sum().reset_index()
    stability = {}
    for gpu in rec["gpu"].unique():
        mine = (rec["gpu"] == gpu).to_numpy()
        stability[str(gpu)] = judge(arrival[mine], finish[mine], met[mine], 0.0, warmup_s=start, end_s=end,
                                    rule=STABILITY_ONLY)
    batches = batch_counts(arrival, met, start, end)
    return RunCheck(seed, verdict, int(met[window].sum()), buckets, cells, stability,
                    floor_failures(buckets, target, itl_limit(sc.slo), overdispersion(batches)), batches)


def itl_limit(slo) -> float | None:
    """The mean-ITL limit (s) buckets are held to under the paper's averaged SLO, else None."""
    return None if slo is None or slo.per_request else slo.tpot_ms / 1000.0


def score(row, target: float, itl_limit_s: float | None) -> float:
    """How far a bucket or cell is from the SLO: 1 or more when it meets it, else the share of
    the target it reached (attainment / target, or the ITL limit / its mean ITL, whichever is worse)."""
    s = (row.met / row.requests) / target if row.requests else 1.0
    if itl_limit_s is not None and getattr(row, "gaps", 0) > 0:
        s = min(s, itl_limit_s / (row.decode_s / row.gaps))
    return s


def floor_failures(buckets: pd.DataFrame, target: float, itl_limit_s: float | None = None,
                   phi: float = 1.0, min_requests: int = BUCKET_MIN_REQUESTS) -> list[dict]:
    """Buckets with enough requests whose Wilson upper bound on attainment is below `target`
    or (the paper's averaged SLO) whose mean ITL is above `itl_limit_s`. `phi`: how clustered the
    misses are (`acceptance.overdispersion`); a bucket's counts count for 1 / phi of as many
    independent requests."""
    out = []
    for row in buckets.itertuples():
        if row.requests < min_requests:
            continue
        _, hi = wilson_interval(row.met / phi, row.requests / phi)
        slow = itl_limit_s is not None and getattr(row, "gaps", 0) > 0 and row.decode_s / row.gaps > itl_limit_s
        if hi < target or slow:
            out.append({"bucket": [int(row.bucket_in), int(row.bucket_out)], "requests": int(row.requests),
                        "attainment": round(row.met / row.requests, 4), "upper": round(hi, 4),
                        **({"mean_itl_ms": round(1000 * row.decode_s / row.gaps, 2)} if slow else {})})
    return out


SUMMED = ("requests", "met", "decode_s", "gaps")  # per-bucket and per-cell columns that add up over runs


def pool(frames: list[pd.DataFrame], keys: list[str]) -> pd.DataFrame:
    """Sum `requests`, `met` (and the averaged SLO's parts) over several runs' tables."""
    both = pd.concat(frames)
    return both.groupby(keys)[[c for c in SUMMED if c in both.columns]].sum().reset_index()


def floor_reason(f: dict, grid) -> str:
    """One low bucket of `floor_failures`, in words, named by its lengths."""
    name = grid.label(*f["bucket"])
    if "mean_itl_ms" in f:
        return f"bucket {name}: mean ITL {f['mean_itl_ms']:.1f} ms over {f['requests']} requests"
    return (f"bucket {name}: attainment {f['attainment']:.4f} over {f['requests']} "
            f"requests (upper bound {f['upper']:.4f} < target)")


@dataclass
class Confirmation:
    """A plan judged on fresh seeds: held only if every run passed and the pooled floor holds."""

    held: bool
    attainment: float | None  # pooled over the runs
    interval: tuple[float, float]  # 95 % interval of the pooled attainment (batch means, >= Wilson)
    target: float
    counted: int
    seeds: list[int]
    reasons: list[str]  # why it did not hold ('' runs left out)
    runs: list[RunCheck] = field(default_factory=list, repr=False)

    def to_dict(self) -> dict:
        """JSON-ready facts (no per-run tables)."""
        return {"held": self.held, "attainment": self.attainment,
                "interval": [round(v, 6) for v in self.interval], "target": self.target,
                "counted": self.counted, "seeds": list(self.seeds), "reasons": list(self.reasons)}

    @classmethod
    def from_dict(cls, d: dict) -> Confirmation:
        """Inverse of to_dict (without the runs)."""
        return cls(bool(d["held"]), d["attainment"], tuple(d["interval"]), float(d["target"]),
                   int(d["counted"]), [int(s) for s in d["seeds"]], list(d["reasons"]))


def confirm(sc: Scenario, plan: Plan, seeds: list[int], settings: RunSettings, *,
            stop_early: bool = True, workers: int = 1,
            progress: Callable[[str], None] | None = None) -> Confirmation:
    """Judge `plan` on each of `seeds` (fresh traffic): one after the other, stopping at the first
    failed run if `stop_early`, or all at once in `workers` processes."""
    if not seeds:
        raise MelangeError("confirm: needs at least one seed")
    runs: list[RunCheck] = []
    if workers > 1 and len(seeds) > 1:
        if progress:
            progress(f"confirming on seeds {', '.join(map(str, seeds))}")
        with ProcessPoolExecutor(min(workers, len(seeds))) as executor:
            runs = list(executor.map(run_check, repeat(sc), repeat(plan), seeds, repeat(settings)))
    for seed in seeds[len(runs):]:
        if progress:
            progress(f"confirming on seed {seed}")
        runs.append(run_check(sc, plan, seed, settings))
        if stop_early and not runs[-1].verdict.passed:
            break
    target = sc.slo.attainment
    counted = sum(r.verdict.counted for r in runs)
    met = sum(r.met for r in runs)
    reasons = [f"seed {r.seed}: {r.verdict.reason}" for r in runs if not r.verdict.passed]
    batches = np.concatenate([r.batches for r in runs if r.batches is not None] or [np.zeros((0, 2))])
    low = floor_failures(pool([r.buckets for r in runs], ["bucket_in", "bucket_out"]), target, itl_limit(sc.slo),
                         overdispersion(batches))
    reasons += [floor_reason(f, sc.workload.grid) for f in low[:MAX_REASONS]]
    if len(low) > MAX_REASONS:
        reasons.append(f"and {len(low) - MAX_REASONS} more buckets below the floor")
    interval = batch_interval(batches) if len(batches) else wilson_interval(met, counted)
    return Confirmation(not reasons and len(runs) == len(seeds), met / counted if counted else None,
                        interval, target, counted, [r.seed for r in runs], reasons, runs)
