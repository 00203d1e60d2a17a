"""The profiler's client: SSE parsing, and every failure mode recorded with its reason."""

from __future__ import annotations

import asyncio
import time

import pytest

from melange.profiler.client import Failure, Job, Target, parse_event, run_jobs
from melange.profiler.emulator import EmulatorConfig, EmulatorThread
from tests.profiler_servers import ServerThread, other_server_app


def test_parse_event_kinds():
    assert parse_event("[DONE]", False) == ("done", None)
    assert parse_event('{"choices": [{"text": " a"}]}', False) == ("tokens", " a")
    assert parse_event('{"choices": [{"delta": {"content": "b"}}]}', True) == ("tokens", "b")
    assert parse_event('{"choices": [{"delta": {"role": "assistant", "content": ""}}]}', True)[0] == "other"
    assert parse_event('{"choices": [], "usage": {"completion_tokens": 3}}', False) == (
        "usage", {"completion_tokens": 3})
    with pytest.raises(Failure, match="malformed event"):
        parse_event('{"choices": [', False)
    with pytest.raises(Failure, match="error event: boom"):
        parse_event('{"error": {"message": "boom"}}', False)


def _run(url: str, n: int, *, timeout_s: float = 5.0, out: int = 6, api: str = "completions",
         model: str = "llama-2-7b", spacing: float = 0.01):
    target = Target(url, model, api=api, prompt="text" if api == "chat" else "ids", timeout_s=timeout_s)
    jobs = [Job(k, k * spacing, 12, out) for k in range(n)]
    return asyncio.run(run_jobs(target, jobs))


def test_faults_are_failures_with_reasons_and_nothing_waits_past_its_timeout():
    cfg = EmulatorConfig(port=0, fixed_ttft_s=0.01, fixed_itl_s=0.002, seed=3, http_error=0.15,
                         error_event=0.15, stall=0.15, drop=0.15, malformed=0.15, stall_s=1.2)
    with EmulatorThread(cfg) as url:
        start = time.perf_counter()
        records = _run(url, 60, timeout_s=0.8)
        wall = time.perf_counter() - start
    assert len(records) == 60  # the run finishes with every request accounted for
    kinds = {}
    for r in records:
        kind = "ok" if r.error is None else r.error.split(":")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    assert set(kinds) == {"ok", "http 500", "error event", "timeout after 0.8 s", "connection dropped",
                          "malformed event"}, kinds
    for r in records:
        assert r.e2e_s <= 0.8 + 0.5  # measured from the scheduled send: never past the timeout
        if r.error is not None:
            assert r.e2e_s == r.e2e_s  # failures keep the time they left the system
    assert wall < 0.6 + 0.8 + 1.5  # last send at 0.59 s, then at most one timeout


def test_short_output_is_a_failure():
    with ServerThread(lambda: other_server_app(short=True)) as url:
        records = _run(url, 3, api="chat", model="other-model", out=5)
    assert all(r.error == "short output: 4 of 5 tokens" for r in records)


def test_http_error_status_and_unknown_model():
    with EmulatorThread(EmulatorConfig(port=0, fixed_ttft_s=0.001, fixed_itl_s=0.001)) as url:
        records = _run(url, 2, model="no-such-model")
    assert all(r.error.startswith("http 404") for r in records)


def test_records_carry_schedule_send_time_and_every_gap():
    with EmulatorThread(EmulatorConfig(port=0, fixed_ttft_s=0.02, fixed_itl_s=0.005)) as url:
        records = _run(url, 5, out=8, spacing=0.05)
    for r in sorted(records, key=lambda r: r.request_id):
        assert r.error is None and r.output_tokens == 8 and r.input_tokens == 12
        assert r.arrival_s == pytest.approx(r.request_id * 0.05)
        assert 0 <= r.send_lag_s < 0.05
        assert len(r.itl_s) == 7 and all(g >= 0 for g in r.itl_s)
        assert r.ttft_s >= 0.02 + r.send_lag_s - 1e-3  # first token due 20 ms after the send
        assert r.e2e_s >= 0.02 + 0.035 + r.send_lag_s - 1e-3  # the last 7 x 5 ms later
        assert r.e2e_s == pytest.approx(r.ttft_s + sum(r.itl_s))


def test_connection_pool_is_not_capped_at_100():
    # 150 requests all in flight at once (each takes 1 s, all sent within 0.15 s): with
    # aiohttp's default 100-connection pool, 50 would wait for a free connection (TTFT >= 2 s).
    with EmulatorThread(EmulatorConfig(port=0, fixed_ttft_s=1.0, fixed_itl_s=0.0)) as url:
        records = _run(url, 150, out=1, spacing=0.001)
    assert all(r.error is None for r in records)
    assert max(r.ttft_s for r in records) < 1.0 + 0.8
