"""The measured rate search, point sizing and judging, and resuming a killed run."""

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
from melange.profiler.store import rate_key
from melange.profiler.search import SearchSettings, judge_point, point_size, search_rate
from tests.profiler_servers import ServerThread, other_server_app


@settings(max_examples=60, deadline=None)
@given(threshold=st.floats(0.05, 500), guess=st.floats(0.01, 100))
def test_search_brackets_then_bisects_and_never_goes_above_a_failure(threshold, guess):
    tried = []

    async def measure(rate):
        tried.append(rate)
        return {"passed": rate <= threshold}

    s = SearchSettings(rel_tol=0.05, max_rate=1e6)
    found = asyncio.run(search_rate(measure, guess, s))
    lowest_floor = 4 * guess / 4 ** 6  # the 7th and last rate tried going down
    if threshold < lowest_floor:
        assert found == 0.0
        return
    assert found <= threshold and found >= threshold / (1 + s.rel_tol) - 1e-9
    failures = [r for r in tried if r > threshold]
    for k, r in enumerate(tried):  # early stop: after a failure going up, only lower rates
        if r in failures:
            assert all(later < r for later in tried[k + 1:])


def _records(n: int, rate: float, e2e: float, errors: int = 0) -> list[RequestRecord]:
    return [RequestRecord(k, k / rate, 10, 10, 0, 0, "g", 0, math.nan, e2e / 10, e2e,
                          error="http 500: x" if k < errors else None, sent_s=k / rate + 0.001)
            for k in range(n)]


def test_judge_point_uses_the_acceptance_rule_and_counts_errors():
    slo = Slo(100, attainment=0.9)
    s = SearchSettings()
    assert judge_point(_records(300, 10.0, 0.5), slo, s)["passed"]
    slow = judge_point(_records(300, 10.0, 1.5), slo, s)  # 150 ms per token > 100
    assert not slow["passed"] and slow["reason"].startswith("SLO")
    few = judge_point(_records(100, 10.0, 0.5), slo, s)
    assert not few["passed"] and few["reason"].startswith("too few")
    errs = judge_point(_records(300, 10.0, 0.5, errors=20), slo, s)  # 6.7 % failed, SLO still met
    assert not errs["passed"] and errs["reason"].startswith("errors") and errs["error_kinds"] == {"http 500": 20}


def test_point_size_is_enough_for_the_rule():
    grid = BucketGrid((1, 100), (1, 50))
    s = SearchSettings()
    for att in (0.9, 0.99):
        need = s.rule.min_counted(att)
        assert point_size(s, Slo(100, attainment=att), grid, 0, 0.1) * (1 - s.warmup) >= need


# --- resume ----------------------------------------------------------------------------------

GRID = BucketGrid((8, 16), (4, 8))
SLO = Slo(120, attainment=0.8)
FAST_RULE = SearchSettings(rel_tol=0.3, rule=AcceptanceRule(min_requests=60, throughput_ratio=0.8, growth_factor=2.0))


class Killer(NoProgress):
    """Records what the run does; `after` records into point `kill_at` it cancels the run's main
    task, which is what asyncio.run does on Ctrl-C."""

    def __init__(self, kill_at=None, after=10):
        self.started, self.reused, self.kill_at, self.after, self.seen = [], [], kill_at, after, 0
        self.main = None

    def point_started(self, bucket, rate, n):
        self.started.append(rate)

    def record(self, failed):
        if self.kill_at is not None and len(self.started) == self.kill_at:
            self.seen += 1
            if self.seen == self.after:
                self.main.cancel()

    def point_done(self, bucket, rate, verdict, reused):
        if reused:
            self.reused.append(rate)


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
    assert [rate_key(r) for r in second.reused[:2]] == [x["rate"] for x in done]
    assert second.started[0] == pytest.approx(first.started[2])
    assert not {rate_key(r) for r in second.started} & {x["rate"] for x in done}
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
    killed = rate_key(first.started[2])  # its killed attempt's 10 records are not mixed in
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
                "--time-scale", "10", "--rel-tol", "0.1", "--quiet", "--store", str(log), "-o", str(out)]
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
