"""The load generator: streams requests to an OpenAI-compatible server and records each one.

Every request is sent at a send time computed ahead (`schedule.py`) and measured from that
*scheduled* time as well as the actual one: `arrival_s` is the scheduled offset and TTFT/e2e
count from it, so a late client cannot hide queueing (coordinated omission); `sent_s` is when the
request really left. Times are multiplied by `time_scale` (an emulator running K times faster
than the GPU it models is profiled with time_scale K, so every figure is in the GPU's seconds).

A request fails, with its reason in `error`, on: an HTTP error status, the per-request timeout,
a dropped connection or a stream that ends without `[DONE]`, a malformed event, an
`{"error": …}` event after HTTP 200, or fewer tokens than asked (we always send `ignore_eos`).
Failed requests keep their times (`e2e_s` = when they failed), so the acceptance rule sees them
leave the system, and never meet the SLO.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import numpy as np

from melange.metrics import RequestRecord

SPIN_S = 0.0012  # the last stretch before a send time is spent yielding, not in a timer
WORDS = ("the of and to in is was for on that with as by at from his an were are which this be "
         "has had one not but after also new first their two its can been other more time").split()


@dataclass(frozen=True)
class Target:
    """Where and how to send: base URL, model name, API flavour and limits."""

    url: str  # e.g. http://127.0.0.1:8000 (without /v1)
    model: str
    api: str = "completions"  # or "chat"
    prompt: str = "ids"  # "ids": token-id prompts (completions only); "text": words
    words_per_token: float = 1.0  # text prompts: words per token (from /tokenize, else 1)
    timeout_s: float = 120.0  # per request, wall seconds
    time_scale: float = 1.0
    api_key: str | None = None
    gpu: str = ""


@dataclass(frozen=True)
class Job:
    """One request to send: when (wall seconds after the start) and its exact lengths."""

    rid: int
    send_s: float
    input_tokens: int
    output_tokens: int
    bucket_in: int = -1
    bucket_out: int = -1
    seed: int = 0


class Failure(Exception):
    """A request failed; the message is the recorded reason."""


def request_body(target: Target, job: Job) -> dict:
    """The JSON body: exact output length (max_tokens + min_tokens + ignore_eos), usage on."""
    body = {"model": target.model, "max_tokens": job.output_tokens, "min_tokens": job.output_tokens,
            "ignore_eos": True, "temperature": 0.0, "stream": True,
            "stream_options": {"include_usage": True}}
    rng = np.random.default_rng([job.seed, job.rid])  # distinct prompts: no prefix-cache hits
    if target.api == "completions" and target.prompt == "ids":
        body["prompt"] = rng.integers(1000, 20000, job.input_tokens).tolist()
        return body
    words = max(1, round(job.input_tokens * target.words_per_token))
    text = " ".join(rng.choice(WORDS, words).tolist())
    if target.api == "chat":
        body["messages"] = [{"role": "user", "content": text}]
    else:
        body["prompt"] = text
    return body


def parse_event(payload: str, chat: bool) -> tuple[str, object]:
    """One SSE `data:` payload -> ('done'|'tokens'|'usage'|'other', value); raises Failure."""
    if payload.strip() == "[DONE]":
        return "done", None
    try:
        event = json.loads(payload)
    except json.JSONDecodeError:
        raise Failure(f"malformed event: {payload[:60]!r}") from None
    if not isinstance(event, dict):
        raise Failure(f"malformed event: {payload[:60]!r}")
    if event.get("error") is not None:
        err = event["error"]
        message = err.get("message", err) if isinstance(err, dict) else err
        raise Failure(f"error event: {str(message)[:120]}")
    choices = event.get("choices")
    if choices:
        c = choices[0] if isinstance(choices[0], dict) else {}
        text = (c.get("delta") or {}).get("content") if chat else c.get("text")
        if text:
            return "tokens", text
    if event.get("usage"):
        return "usage", event["usage"]
    return "other", None


async def read_stream(resp: aiohttp.ClientResponse, chat: bool) -> tuple[list[float], dict | None]:
    """Token-chunk arrival times (perf_counter) and the usage block of one SSE stream."""
    times: list[float] = []
    usage = None
    data: list[str] = []
    done = False
    async for raw in resp.content:
        line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].lstrip(" "))
            continue
        if line or not data:
            continue  # comments, other fields, keep-alive blank lines
        kind, value = parse_event("\n".join(data), chat)
        data = []
        if kind == "tokens":
            times.append(time.perf_counter())
        elif kind == "usage":
            usage = value
        elif kind == "done":
            done = True
            break
    if data:  # a last event without its blank line
        kind, value = parse_event("\n".join(data), chat)
        done = done or kind == "done"
    if not done:
        raise Failure("connection dropped: stream ended without [DONE]")
    return times, usage


async def send(session: aiohttp.ClientSession, target: Target, job: Job, t0: float,
               body: bytes | None = None) -> RequestRecord:
    """Send one request at its scheduled time (already reached) and measure it."""
    sched = t0 + job.send_s
    chat = target.api == "chat"
    path = "/v1/chat/completions" if chat else "/v1/completions"
    headers = {"Content-Type": "application/json"}
    if target.api_key:
        headers["Authorization"] = f"Bearer {target.api_key}"
    if body is None:
        body = json.dumps(request_body(target, job)).encode()
    times: list[float] = []
    usage = None
    error = None
    sent = time.perf_counter()
    try:
        timeout = aiohttp.ClientTimeout(total=target.timeout_s)
        async with session.post(target.url.rstrip("/") + path, data=body, headers=headers,
                                timeout=timeout) as resp:
            if resp.status != 200:
                text = (await resp.text())[:200].replace("\n", " ")
                raise Failure(f"http {resp.status}: {text}")
            times, usage = await read_stream(resp, chat)
    except Failure as exc:
        error = str(exc)
    except asyncio.TimeoutError:
        error = f"timeout after {target.timeout_s:g} s"
    except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionError,
            ConnectionError) as exc:
        error = f"connection dropped: {type(exc).__name__}"
    except aiohttp.ClientError as exc:
        error = f"client error: {type(exc).__name__}: {exc}"
    except ValueError as exc:  # e.g. an event line longer than the stream reader's limit
        error = f"malformed event: {exc}"
    end = time.perf_counter()
    got = len(times)
    if usage and isinstance(usage.get("completion_tokens"), int):
        got = usage["completion_tokens"]
    prompt_tokens = usage.get("prompt_tokens", job.input_tokens) if usage else job.input_tokens
    if error is None and got < job.output_tokens:
        error = f"short output: {got} of {job.output_tokens} tokens"
    k = target.time_scale
    first = (times[0] - sched) * k if times else math.nan
    last = (times[-1] - sched) * k if (times and error is None) else (end - sched) * k
    return RequestRecord(
        request_id=job.rid, arrival_s=job.send_s * k, input_tokens=int(prompt_tokens),
        output_tokens=int(got), bucket_in=job.bucket_in, bucket_out=job.bucket_out, gpu=target.gpu,
        instance=0, queue_s=math.nan, ttft_s=first, e2e_s=last, error=error,
        sent_s=(sent - t0) * k, itl_s=tuple(float(v) * k for v in np.diff(times)) if len(times) > 1 else ())


async def sleep_until(when: float) -> None:
    """Sleep until perf_counter() reaches `when`. The event loop's timers wake up to 1 ms late
    (epoll rounds timeouts up to whole ms), so the last millisecond is spent yielding instead."""
    delay = when - time.perf_counter() - SPIN_S
    if delay > 0:
        await asyncio.sleep(delay)
    while time.perf_counter() < when:
        await asyncio.sleep(0)  # other requests' streams keep being read meanwhile


async def run_jobs(target: Target, jobs: list[Job], on_record: Callable[[RequestRecord], None] | None = None,
                   stop: Callable[[], bool] | None = None) -> list[RequestRecord]:
    """Send every job at its time (unless `stop()` turns true), wait for all, return the records.

    The connection pool is sized to the load (every job may be in flight at once): aiohttp's
    default of 100 connections would silently cap the offered rate."""
    connector = aiohttp.TCPConnector(limit=max(len(jobs), 1), limit_per_host=max(len(jobs), 1),
                                     force_close=False, enable_cleanup_closed=True)
    records: list[RequestRecord] = []

    bodies = {job.rid: json.dumps(request_body(target, job)).encode() for job in jobs}  # off the hot loop

    async def one(job: Job) -> None:
        rec = await send(session, target, job, t0, bodies[job.rid])
        records.append(rec)
        if on_record is not None:
            on_record(rec)

    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = []
        t0 = time.perf_counter() + 0.05  # a moment to start the loop before the first send
        for job in sorted(jobs, key=lambda j: j.send_s):
            if stop is not None and stop():
                break
            await sleep_until(t0 + job.send_s)
            tasks.append(asyncio.ensure_future(one(job)))
        if tasks:
            await asyncio.gather(*tasks)
    return records


def words_per_token(url: str, api_key: str | None) -> float | None:
    """Words per token of the server's tokenizer on our filler text (its /tokenize); None when
    the server cannot tell (no /tokenize)."""
    import urllib.error
    import urllib.request

    text = " ".join(WORDS * 5)
    req = urllib.request.Request(url.rstrip("/") + "/tokenize", data=json.dumps({"prompt": text}).encode(),
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {api_key}"} if api_key else {})})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            count = json.loads(resp.read()).get("count")
    except (urllib.error.URLError, OSError, ValueError, AttributeError):
        return None
    return len(text.split()) / count if isinstance(count, int) and count > 0 else None


PREFLIGHT_TIMEOUT_S = 30.0  # a server that cannot answer one small request in this is not measured


def preflight(target: Target) -> None:
    """One small request before any search: a server that is down, not HTTP, or refuses our
    requests (e.g. text prompts only) is a one-line MelangeError with its own reason, not a
    profile of zeros after the whole search."""
    from urllib.parse import urlparse

    from melange.core import MelangeError

    parsed = urlparse(target.url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise MelangeError(f"--url {target.url}: expected http://HOST:PORT or https://HOST:PORT")
    probe = Job(0, 0.0, 8, 4)
    quick = Target(**{**target.__dict__, "timeout_s": min(target.timeout_s, PREFLIGHT_TIMEOUT_S)})
    (record,) = asyncio.run(run_jobs(quick, [probe]))
    if record.error is not None:
        raise MelangeError(f"--url {target.url}: the server did not answer a test request of 8 tokens in, 4 out "
                           f"({record.error})")
