"""The shared rate search, the measured points' sizing and judging, and resuming a killed run."""

from __future__ import annotations

import asyncio
import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from melange.acceptance import AcceptanceRule
from melange.core import BucketGrid, MelangeError, Slo
from melange.metrics import RequestRecord
from melange.profiler.client import Target
from melange.profiler.run import NoProgress, profile_server
from melange.profiler.search import SearchSettings, judge_point, point_plan
from melange.profiler.store import rate_key
from melange.rate_search import SearchParams, Trial, run_search, run_search_async, search
from tests.profiler_servers import ServerThread, other_server_app


@settings(max_examples=60, deadline=None)
@given(threshold=st.floats(0.05, 500), guess=st.floats(0.01, 100), lucky=st.floats(0.0, 0.3))
def test_search_brackets_bisects_confirms_and_never_goes_above_a_failure(threshold, guess, lucky):
    # Search trials pass up to `threshold x (1 + lucky)` (a lucky streak near the edge); the
    # confirming trial only up to `threshold`, and only with the guard band's attainment.
    tried = []
    p = SearchParams(rel_tol=0.05, max_rate=1e6)

    def measure(t: Trial):
        tried.append(t)
        if t.confirm:
            return t.rate <= threshold, 0.9999 if t.rate <= threshold else 0.98
        return t.rate <= threshold * (1 + lucky), 0.999

    found = run_search(search(guess, p, 0.99), measure)
    if threshold * (1 + lucky) < guess / 4 ** 5:  # the 6th and last rate tried going down
        assert found == 0.0 and not any(t.confirm for t in tried)
        return
    assert 0 < found <= threshold  # never above what holds on fresh traffic
    confirms = [t for t in tried if t.confirm]
    assert confirms and confirms[-1].rate == found
    assert all(b.rate == pytest.approx(a.rate * (1 - p.step_down)) for a, b in zip(confirms, confirms[1:]))
    search_trials = [t.rate for t in tried if not t.confirm]
    failures = [r for r in search_trials if r > threshold * (1 + lucky)]
    for k, r in enumerate(search_trials):  # after a failure, no rate at or above it
        if r in failures:
            assert all(later < r for later in search_trials[k + 1:])
    assert len(set(search_trials)) == len(search_trials)  # no rate measured twice


def test_the_async_driver_runs_the_same_search():
    def ok(t):
        return t.rate <= 7.0, 1.0

    async def aok(t):
        return ok(t)

    p = SearchParams(rel_tol=0.01)
    assert asyncio.run(run_search_async(search(1.0, p, 0.9), aok)) == run_search(search(1.0, p, 0.9), ok)


def test_trial_span_confirms_longer_and_with_enough_arrivals():
    p = SearchParams()
    warmup, window = p.span(2.0, 10.0, 200)
    assert warmup == 4.0 and window == 60.0  # >= min_window_s, >= 5 x latency, >= 1.2 x 200 / rate
    _, longer = p.trial_span(Trial(10.0, confirm=True), 2.0, 200)
    assert longer == 1000.0  # 10,000 arrivals at 10 req/s beats 4 x 60 s
    assert p.span(2.0, 1.0, 200)[1] == 240.0  # a slow rate: the rule's counted requests set the window


def _records(n: int, rate: float, e2e: float, errors: int = 0) -> list[RequestRecord]:
    return [RequestRecord(k, k / rate, 10, 10, 0, 0, "g", 0, math.nan, e2e / 10, e2e,
                          error="http 500: x" if k < errors else None, sent_s=k / rate + 0.001)
            for k in range(n)]


def test_judge_point_uses_the_acceptance_rule_and_counts_errors():
    slo = Slo(100, attainment=0.9)
    s = SearchSettings()
    assert judge_point(_records(300, 10.0, 0.5), slo, s, 2.0)["passed"]
    slow = judge_point(_records(300, 10.0, 1.5), slo, s, 2.0)  # 150 ms per token > 100
    assert not slow["passed"] and slow["reason"].startswith("SLO")
    few = judge_point(_records(300, 10.0, 0.5), slo, s, 20.0)  # the warm-up leaves 100 counted
    assert not few["passed"] and few["reason"].startswith("too few")
    errs = judge_point(_records(300, 10.0, 0.5, errors=20), slo, s, 2.0)  # 6.7 % failed, SLO still met
    assert not errs["passed"] and errs["reason"].startswith("errors") and errs["error_kinds"] == {"http 500": 20}


@pytest.mark.parametrize("confirm", [False, True])
def test_point_plan_counts_enough_after_the_warmup(confirm):
    grid = BucketGrid((1, 100), (1, 50))
    s = SearchSettings()
    for att in (0.9, 0.99):
        for rate in (0.1, 3.0, 400.0):
            slo = Slo(100, attainment=att)
            n, warmup_s = point_plan(s, slo, grid, 0, Trial(rate, confirm))
            assert warmup_s == 2 * 49 * 0.1  # twice the slowest request's SLO-bound latency
            assert n - warmup_s * rate >= s.rule.min_counted(att)
            if confirm and rate < 5:
                assert n >= s.params.confirm_requests


# --- resume ----------------------------------------------------------------------------------

GRID = BucketGrid((8, 16), (4, 8))
SLO = Slo(120, attainment=0.8)
FAST_RULE = SearchSettings(SearchParams(rel_tol=0.3, min_window_s=0.0, horizon=2.0, warmup=1.0, confirm=1.0,
                                        confirm_requests=100),
                           rule=AcceptanceRule(min_requests=60, throughput_ratio=0.8, growth_factor=2.0))


class Killer(NoProgress):
    """Records what the run does; `after` records into point `kill_at` it cancels the run's main
    task, which is what asyncio.run does on Ctrl-C."""

    def __init__(self, kill_at=None, after=10):
        self.started, self.reused, self.kill_at, self.after, self.seen = [], [], kill_at, after, 0
        self.main = None

    def point_started(self, bucket, trial, n):
        self.started.append(rate_key(trial.rate, trial.confirm))

    def record(self, failed):
        if self.kill_at is not None and len(self.started) == self.kill_at:
            self.seen += 1
            if self.seen == self.after:
                self.main.cancel()

    def point_done(self, bucket, trial, verdict, reused):
        if reused:
            self.reused.append(rate_key(trial.rate, trial.confirm))


def test_killed_run_resumes_and_reuses_finished_points(tmp_path):
    log = tmp_path / "run.jsonl"
    with ServerThread(lambda: other_server_app(slots=8, token_s=0.002)) as url:
        target = Target(url, "other-model", api="chat", prompt="text", timeout_s=5, time_scale=10.0, gpu="X")
        first = Killer(kill_at=3)

        async def killed_run():
            first.main = asyncio.current_task()
            await profile_server(target, GRID, SLO, FAST_RULE, log, progress=first)

        with pytest.raises(asyncio.CancelledError):
            asyncio.run(killed_run())
        lines = [json.loads(x) for x in log.read_text().splitlines()]
        done = [x for x in lines if x["type"] == "point"]
        assert len(done) == 2 and len(first.started) == 3
        with log.open("a") as f:
            f.write('{"type": "record", "bucket": [0, 0], "ra')  # killed mid-line
        second = Killer()
        result = asyncio.run(profile_server(target, GRID, SLO, FAST_RULE, log, progress=second))
    # The two finished points are recalled, not measured again; the killed one is re-measured.
    assert second.reused[:2] == [x["rate"] for x in done]
    assert second.started[0] == first.started[2]
    assert not set(second.started) & {x["rate"] for x in done}
    print("rates measured", first.started, second.started)
    assert result.profile.max_rate[0, 0] > 0
    unreadable = 0
    for line in log.read_text().splitlines():
        try:
            json.loads(line)
        except json.JSONDecodeError:
            unreadable += 1
    assert unreadable == 1  # only the torn line: the resumed run's first line was not glued to it
    assert len(result.records[(0, 0, done[0]["rate"])]) == done[0]["requests"]
    killed = first.started[2]  # its killed attempt's 10 records are not mixed in
    redone = [x for x in result.points if x["rate"] == killed][0]
    assert len(result.records[(0, 0, killed)]) == redone["requests"]


def test_resume_refuses_a_log_of_another_run(tmp_path):
    log = tmp_path / "run.jsonl"
    log.write_text(json.dumps({"type": "run", "config": {"gpu": "other"}}) + "\n")
    target = Target("http://127.0.0.1:9", "m", gpu="X")
    with pytest.raises(MelangeError, match="--store: .* was made with another"):
        asyncio.run(profile_server(target, GRID, SLO, FAST_RULE, log))


@pytest.mark.slow
def test_sigkilled_cli_run_resumes(tmp_path):
    # `melange profile --url` in a subprocess, SIGKILLed once its first point is logged.
    import os
    import signal
    import subprocess
    import sys
    import time

    import yaml

    exe = os.path.join(os.path.dirname(sys.executable), "melange")
    grid = tmp_path / "grid.yaml"
    grid.write_text(yaml.safe_dump({"input_edges": [8, 16], "output_edges": [4, 8]}))
    log, out = tmp_path / "run.jsonl", tmp_path / "p.yaml"
    with ServerThread(lambda: other_server_app(slots=8, token_s=0.002)) as url:
        argv = [exe, "profile", "--url", url, "--api", "chat", "--model", "llama-2-7b", "--served-model-name",
                "other-model", "--gpu", "A10G", "--slo-tpot", "120ms", "--attainment", "0.9", "--grid", str(grid),
                "--time-scale", "10", "--rel-tol", "0.1", "--min-window", "5s", "--confirm-requests", "300",
                "--quiet", "--store", str(log), "-o", str(out)]
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not log.exists() or '"point"' not in log.read_text()):
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        raw = log.read_text().splitlines()
        done = {json.loads(x)["rate"] for x in raw if x.endswith("}") and '"point"' in x}
        assert done and not out.exists()
        assert subprocess.run(argv, capture_output=True, timeout=300).returncode == 0
    after = [json.loads(x) for x in log.read_text().splitlines()[len(raw):]]
    restarted = {x["rate"] for x in after if x["type"] == "start"}
    assert not restarted & done  # finished points reused, not measured again
    assert yaml.safe_load(out.read_text())["max_rate"][0][0] > 0


@pytest.mark.parametrize("field, value", [("rel_tol", 0.0), ("step_down", 1.0), ("confirm", 0.5),
                                          ("max_requests", 0), ("confirm_misses", 2.0), ("max_rate", -1.0)])
def test_search_params_out_of_range_are_refused_naming_the_field(field, value):
    with pytest.raises(MelangeError, match=f"search.{field}"):
        SearchParams(**{field: value})


def test_max_requests_caps_a_point_and_a_capped_point_cannot_pass_on_too_few():
    grid = BucketGrid((1, 100), (1, 512))
    slo = Slo(100, attainment=0.99)  # the slowest request may take 51 s: a point is minutes long
    capped = SearchSettings(SearchParams(max_requests=3000))
    n, warmup_s = point_plan(capped, slo, grid, 0, Trial(300.0))
    assert n == 3000 and warmup_s * 300.0 > n  # all warm-up: nothing left to count
    assert not judge_point(_records(n, 300.0, 1.0), slo, capped, warmup_s)["passed"]
    assert point_plan(SearchSettings(), slo, grid, 0, Trial(300.0))[0] == 30_000  # the default runaway cap


def test_a_confirming_trial_below_its_guard_band_shows_as_a_failure(capsys):
    """Issue 17.11: the progress line printed "pass, attainment 0.916" for a confirming trial that
    missed its guard band (the search stepped down, the screen said it passed)."""
    from melange.profiler.progress import RichProgress
    from melange.rate_search import Trial

    with RichProgress("A10G") as progress:
        progress.point_done((1, 1), Trial(3.0, confirm=True), {"passed": True, "attainment": 0.916, "guard": 0.995},
                           False)
        progress.point_done((1, 1), Trial(2.85, confirm=True), {"passed": True, "attainment": 0.997, "guard": 0.995},
                            False)
    err = " ".join(capsys.readouterr().err.split())  # the console folds long lines
    first, second = err.split("2.85 req/s")
    assert "fail, attainment 0.916 (below the guard band 0.995)" in first and "pass, attainment 0.997" in second, err


def test_a_rate_must_pass_every_confirming_seed():
    """Issue 18: a rate that passes its first confirming seed by luck and fails the second is
    lowered; under the paper's averaged rule one confirming seed is the rule."""
    from melange.core import Slo
    from melange.rate_search import SearchParams, run_search, search

    p = SearchParams()
    seen = []

    def measure(t):
        seen.append((round(t.rate, 3), t.confirm, p.trial_seed(t)))
        if not t.confirm:
            return t.rate <= 10.0, 1.0
        # The second seed catches a burst at any rate above 9.
        return True, (0.99 if t.confirm == 2 and t.rate > 9.0 else 1.0)

    per_request = run_search(search(1.0, p, 0.99, p.confirmations(Slo(100.0, "decode", 3000.0))), measure)
    assert per_request <= 9.0 and {c for _, c, _ in seen} == {0, 1, 2}
    assert {s for _, c, s in seen if c} == {p.seed + 1, p.seed + 2}
    seen.clear()
    averaged = run_search(search(1.0, p, 0.99, p.confirmations(Slo(100.0, "mean_itl"))), measure)
    assert averaged > 9.0 and {c for _, c, _ in seen} == {0, 1}
