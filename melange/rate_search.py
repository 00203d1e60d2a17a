"""The one rate search: how long a load test at a rate runs, and how a bucket's max rate is found
and confirmed on fresh traffic. Sim-profiles (`perf/profile_sim.py`) and the measured profiler
(`profiler/`) both use it, and judge each load test by `melange.acceptance.judge`, so a max rate
means the same thing however it was made.

A trial at rate r: a warm-up of `warmup` x the slowest request's SLO-bound latency (the
empty-system start, left out), then a window of at least `horizon` x that latency, at least
`min_window_s` (short requests at a high rate: a slowly growing queue needs time to show) and at
least 1.2 x the counted requests the rule needs (`AcceptanceRule.min_counted`).

Search: from a first guess (about one request in flight), step down by 4x until a trial passes
(at most 6 tries), double until one fails, bisect to `rel_tol`, never trying a rate at or above
one seen to fail; then confirm the answer on trials `confirm` x longer (and of at least
`confirm_requests` arrivals, so bursty misses average out) with fresh seeds (seed + 1, seed + 2,
... `confirm_seeds` of them) that each also meet a guard band (at most `confirm_misses` of the
allowed misses: 0.995 for a 0.99 target), stepping down by `step_down` until one rate passes them
all. Near the edge, attainment varies from seed to seed more than binomial noise says (misses come
in bursts), and a rate that passed one trial by luck must not be published: with the calibrated
step model one H100 cell (Mistral-7B, 1,000-2,000 in / 250-500 out) passed its single confirming
seed at 0.995 and then got 0.980 over 20,000 fresh requests; a second confirming seed is what
separates such a rate from one that holds. Under the paper's averaged rule (`mean_itl`) one seed
is enough: no request's wait is limited there, and its guard band is on the rate (x 0.9).

`search` is a generator, so one algorithm serves a simulator (`run_search`) and a live server
(`run_search_async`): it yields the trials it wants, `Trial(rate, confirm)`, and is sent back
each one's `(passed, attainment)`.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Generator
from dataclasses import dataclass

from melange.core import MelangeError, Slo

COUNT_MARGIN = 1.2  # expected arrivals in the window per request the rule needs (Poisson noise)
# `mean_itl` limits no single request's TTFT: a request's wait is bounded by this for run lengths.
MEAN_ITL_WAIT_S = 10.0


@dataclass(frozen=True)
class SearchParams:
    """How long trials are and how hard the rate search works (see the module docstring)."""

    rel_tol: float = 0.025  # stop bisecting when (hi - lo) / lo is below this
    horizon: float = 5.0  # window >= this x the slowest request's SLO-bound latency
    min_window_s: float = 60.0  # and >= this: a queue growing by ~1 req/s takes a minute to show
    warmup: float = 2.0  # warm-up = this x that latency
    max_requests: int = 30_000  # per trial: a cap on runaway trials at very high rates
    confirm: float = 4.0  # the confirming trial is this x longer, on seed + 1
    confirm_requests: int = 10_000  # and has at least this many arrivals (misses come in bursts)
    step_down: float = 0.05  # a rate that fails confirmation is lowered by this share
    confirm_misses: float = 0.5  # the confirming trial may miss only this share of the allowed misses
    confirm_seeds: int = 2  # confirming trials, each on its own fresh seed (per-request rules)
    max_rate: float = 2000.0  # req/s: give up doubling here
    seed: int = 0

    def __post_init__(self) -> None:
        # A zero rel_tol would bisect forever; a step_down of 0 or 1 would confirm nothing.
        checks = {"rel_tol": self.rel_tol > 0, "horizon": self.horizon >= 0, "min_window_s": self.min_window_s >= 0,
                  "warmup": self.warmup >= 0, "max_requests": self.max_requests >= 1, "confirm": self.confirm >= 1,
                  "confirm_requests": self.confirm_requests >= 0, "step_down": 0 < self.step_down < 1,
                  "confirm_misses": 0 <= self.confirm_misses <= 1, "max_rate": self.max_rate > 0,
                  "confirm_seeds": self.confirm_seeds >= 1}
        for name, ok in checks.items():
            if not ok:
                raise MelangeError(f"search.{name}: out of range ({getattr(self, name)!r})")

    def span(self, latency_s: float, rate: float, need: int, *, scale: float = 1.0,
             min_requests: int = 0) -> tuple[float, float]:
        """(warm-up, window) seconds of a trial at `rate` whose slowest request may take
        `latency_s`, when the rule needs `need` counted requests; the window `scale` x longer and
        of at least `min_requests` expected arrivals."""
        warmup_s = self.warmup * latency_s
        counted = need * COUNT_MARGIN
        window_s = scale * max(self.horizon * latency_s, counted / rate, self.min_window_s)
        window_s = min(window_s, max(self.max_requests / rate - warmup_s, counted / rate))
        return warmup_s, max(window_s, min_requests / rate)

    def trial_span(self, trial: Trial, latency_s: float, need: int) -> tuple[float, float]:
        """`span` of a search trial: the confirming one is longer."""
        if trial.confirm:
            return self.span(latency_s, trial.rate, need, scale=self.confirm, min_requests=self.confirm_requests)
        return self.span(latency_s, trial.rate, need)

    def trial_seed(self, trial: Trial) -> int:
        """The seed of a search trial: seed + k for the k-th confirming one (traffic the search
        never saw)."""
        return self.seed + int(trial.confirm)

    def confirmations(self, slo: Slo) -> int:
        """Confirming seeds a rate must pass under `slo`: one under the paper's averaged rule
        (its guard band is on the rate), else `confirm_seeds`."""
        return 1 if slo.definition == "mean_itl" else self.confirm_seeds

    def strict(self, target: float) -> float:
        """The attainment a confirming trial must reach: the target with a guard band."""
        return 1.0 - (1.0 - target) * self.confirm_misses


@dataclass(frozen=True)
class Trial:
    """One load test the search asks for: a rate, and 0 for a search trial or k for the k-th
    confirming one."""

    rate: float
    confirm: int = 0


def slo_bound_s(slo: Slo, out_tokens: int) -> float:
    """Longest latency a request with `out_tokens` output tokens may have and still meet the SLO
    (every valid `Slo` bounds it: `decode` requires a TTFT limit; under `mean_itl`, which judges
    averages, a request may wait `MEAN_ITL_WAIT_S` or the TTFT limit, whichever is larger)."""
    if slo.e2e_ms is not None:
        # The TPOT limit bounds the whole latency only under `mean`, or `decode` with a TTFT limit.
        if slo.tpot_ms is None or (slo.definition == "decode" and slo.ttft_ms is None):
            return slo.e2e_ms / 1000.0
        return min(slo.e2e_ms / 1000.0, _tpot_bound_s(slo, out_tokens))
    return _tpot_bound_s(slo, out_tokens)


def _tpot_bound_s(slo: Slo, out_tokens: int) -> float:
    """slo_bound_s from the TPOT (and TTFT) limits alone."""
    tpot = slo.tpot_ms / 1000.0
    if slo.definition == "mean":
        return out_tokens * tpot
    wait = slo.ttft_ms / 1000.0 if slo.ttft_ms is not None else 0.0
    if slo.definition == "mean_itl":
        wait = max(wait, MEAN_ITL_WAIT_S)
    return wait + max(out_tokens - 1, 0) * tpot


Search = Generator[Trial, tuple[bool, float | None], float]


def search(first_guess: float, params: SearchParams, target: float, confirmations: int = 1) -> Search:
    """The search of the module docstring, confirming on `confirmations` fresh seeds (see
    `SearchParams.confirmations`); returns the max rate (0 if even a nearly idle server fails).
    Send back `(passed, attainment)` for every `Trial` it yields."""
    failed = math.inf  # the lowest rate seen to fail
    lo = first_guess
    for _ in range(6):  # below the guess: the SLO may need a nearly idle server
        passed, _ = yield Trial(lo)
        if passed:
            break
        failed, lo = lo, lo / 4
    else:
        return 0.0
    hi = lo * 2
    while hi <= params.max_rate:
        if hi >= failed:  # known to fail: bisect up to it
            hi = failed
            break
        passed, _ = yield Trial(hi)
        if not passed:
            failed = hi
            break
        lo, hi = hi, hi * 2
    while hi <= params.max_rate and (hi - lo) / lo > params.rel_tol:
        mid = (lo + hi) / 2
        passed, _ = yield Trial(mid)
        lo, hi = (mid, hi) if passed else (lo, mid)
    strict = params.strict(target)
    for _ in range(40):
        for k in range(1, confirmations + 1):
            passed, attainment = yield Trial(lo, confirm=k)
            if not (passed and attainment is not None and attainment >= strict):
                break
        else:
            return lo
        lo *= 1 - params.step_down
    return 0.0


def run_search(steps: Search, measure: Callable[[Trial], tuple[bool, float | None]]) -> float:
    """Drive `search` with a synchronous `measure(trial) -> (passed, attainment)`."""
    try:
        trial = next(steps)
        while True:
            trial = steps.send(measure(trial))
    except StopIteration as stop:
        return stop.value


async def run_search_async(steps: Search,
                           measure: Callable[[Trial], Awaitable[tuple[bool, float | None]]]) -> float:
    """Drive `search` with an asynchronous `measure` (a live server)."""
    try:
        trial = next(steps)
        while True:
            trial = steps.send(await measure(trial))
    except StopIteration as stop:
        return stop.value
