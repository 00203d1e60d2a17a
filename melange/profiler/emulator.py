"""An OpenAI-compatible server timed by the simulator's engine: `melange emulate`.

Speaks what vLLM's OpenAI server speaks, enough for load generators: `/v1/completions` and
`/v1/chat/completions` (streaming and not; `stream_options.include_usage` adds a last chunk with
`"choices": []` and the usage; `max_tokens`, `ignore_eos`, `min_tokens`; prompts as text or
token ids), `/v1/models`, `/health`, `/tokenize` and `/metrics` (vLLM's names, see prom.py).
The emulated model never emits EOS: every request makes exactly `max_tokens` tokens. Text is
tokenized as one token per whitespace-separated word; a token-id prompt is as long as its list.

Timing comes from `wallclock.WallClockEngine` (the simulator's instance on the wall clock) or,
for client-overhead measurements, from `wallclock.FixedLatency`. Fault flags make chosen shares
of requests fail the ways real servers do (seeded, so a test sees the same faults every run).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
from aiohttp import web

from melange.core import EngineConfig, MelangeError
from melange.profiler.prom import ServerMetrics
from melange.profiler.wallclock import FixedLatency, WallClockEngine, engine_tokens

FAULTS = ("http_error", "error_event", "stall", "drop", "malformed")
DEFAULT_MAX_TOKENS = 16


@dataclass(frozen=True)
class EmulatorConfig:
    """What `melange emulate` serves and how."""

    gpu: str = "A100-80GB"
    model: str = "llama-2-7b"
    served_name: str | None = None  # the model name clients send (default: `model`)
    host: str = "127.0.0.1"
    port: int = 8000
    speedup: float = 1.0
    seed: int = 0
    engine: EngineConfig = EngineConfig()
    fixed_ttft_s: float | None = None  # both set: fixed latencies instead of the engine
    fixed_itl_s: float | None = None
    http_error: float = 0.0  # shares of requests given each fault
    error_event: float = 0.0
    stall: float = 0.0
    drop: float = 0.0
    malformed: float = 0.0
    stall_s: float = 3600.0  # how long a stalled stream pauses (wall seconds)
    catalog: tuple[str, ...] = ()


def _error(status: int, message: str, kind: str = "BadRequestError") -> web.Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": status}}
    return web.json_response(body, status=status)


def count_tokens(body: dict, chat: bool) -> int:
    """Prompt length in tokens: a token-id list's length, else whitespace-separated words."""
    if chat:
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            raise MelangeError("messages: must be a non-empty list")
        words = 0
        for m in messages:
            content = m.get("content") if isinstance(m, dict) else None
            if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
                content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            words += len(str(content or "").split())
        return max(words, 1)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], (str, list)):
        prompt = prompt[0]  # a batch of one
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)
    if isinstance(prompt, str):
        return max(len(prompt.split()), 1)
    raise MelangeError("prompt: must be a string or a list of token ids")


class Emulator:
    """The aiohttp application and its state."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.name = config.served_name or config.model
        self.rng = np.random.default_rng(config.seed)
        self.fault_p = np.array([getattr(config, f) for f in FAULTS])
        if (self.fault_p < 0).any() or self.fault_p.sum() > 1:
            raise MelangeError("fault rates: each must be >= 0 and together at most 1")
        self.engine: WallClockEngine | None = None
        self.fixed: FixedLatency | None = None
        if config.fixed_ttft_s is not None or config.fixed_itl_s is not None:
            self.fixed = FixedLatency(config.fixed_ttft_s or 0.0, config.fixed_itl_s or 0.0, config.speedup)
            from melange.perf import load_catalog

            # What a real server of this model reports: its configured, else its catalog context.
            self.max_len = config.engine.max_model_len or load_catalog(config.catalog).model(config.model).max_context
        else:
            from melange.perf import load_catalog, roofline_model

            catalog = load_catalog(config.catalog)
            model = roofline_model(catalog.instance(config.gpu), catalog.model(config.model), config.engine)
            self.engine = WallClockEngine(config.gpu, model, config.engine, config.speedup)
            self.max_len = self.engine.instance.max_len
        self.metrics = ServerMetrics(self.name, self.max_len)
        self.in_flight = 0  # fixed-latency mode has no engine to count its running requests
        self.app = web.Application()
        self.app.add_routes([
            web.post("/v1/completions", self.completions), web.post("/v1/chat/completions", self.chat),
            web.get("/v1/models", self.models), web.get("/health", self.health),
            web.post("/tokenize", self.tokenize), web.get("/metrics", self.prometheus)])
        self.app.on_startup.append(self._start)
        self.app.on_cleanup.append(self._stop)
        self._driver: asyncio.Task | None = None

    async def _start(self, app: web.Application) -> None:
        if self.engine is not None:
            self._driver = asyncio.get_running_loop().create_task(self.engine.drive())

    async def _stop(self, app: web.Application) -> None:
        if self._driver is not None:
            self._driver.cancel()

    # --- small endpoints ---------------------------------------------------------------------

    async def health(self, request: web.Request) -> web.Response:
        """GET /health: 200 once serving."""
        return web.Response(status=200)

    async def models(self, request: web.Request) -> web.Response:
        """GET /v1/models: the one served model."""
        return web.json_response({"object": "list", "data": [{
            "id": self.name, "object": "model", "created": int(time.time()), "owned_by": "melange",
            "root": self.config.model, "max_model_len": self.max_len}]})

    async def tokenize(self, request: web.Request) -> web.Response:
        """POST /tokenize: vLLM's shape, {count, max_model_len, tokens}."""
        try:
            body = await request.json()
            n = count_tokens(body, chat="messages" in body)
        except (json.JSONDecodeError, MelangeError, AttributeError) as exc:
            return _error(400, f"tokenize: {exc}")
        return web.json_response({"count": n, "max_model_len": self.max_len,
                                  "tokens": [1000 + k % 30000 for k in range(n)]})

    async def prometheus(self, request: web.Request) -> web.Response:
        """GET /metrics: Prometheus text, vLLM's metric names."""
        gauges = self.engine.gauges() if self.engine is not None else {"running": self.in_flight}
        return web.Response(text=self.metrics.render(gauges), content_type="text/plain")

    # --- generation ----------------------------------------------------------------------------

    async def completions(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/completions."""
        return await self._generate(request, chat=False)

    async def chat(self, request: web.Request) -> web.StreamResponse:
        """POST /v1/chat/completions."""
        return await self._generate(request, chat=True)

    async def _generate(self, request: web.Request, chat: bool) -> web.StreamResponse:
        arrived = time.perf_counter()  # fixed latencies count from here, before parsing the body
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise MelangeError("body: must be a JSON object")
            if body.get("model", self.name) not in (self.name, self.config.model):
                return _error(404, f"The model `{body.get('model')}` does not exist.", "NotFoundError")
            prompt = count_tokens(body, chat)
            output = int(body.get("max_completion_tokens") or body.get("max_tokens") or DEFAULT_MAX_TOKENS)
            if output < 1:
                raise MelangeError("max_tokens: must be >= 1")
        except (json.JSONDecodeError, MelangeError, TypeError, ValueError) as exc:
            return _error(400, str(exc))
        fault = self._draw_fault()
        if fault == "http_error":
            return _error(500, "emulated internal server error", "InternalServerError")
        try:
            tokens, timing = self._tokens(prompt, output, arrived)
        except MelangeError as exc:
            return _error(400, f"This model's maximum context length is {self.max_len} tokens: {exc}")
        stream = bool(body.get("stream"))
        usage = {"prompt_tokens": prompt, "completion_tokens": output, "total_tokens": prompt + output}
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        if not stream:
            async for _ in tokens:
                pass
            self._finished(prompt, output, timing)
            return web.json_response(_full_body(rid, self.name, chat, output, usage))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        try:
            return await self._stream(request, chat, rid, output, tokens, fault, usage if include_usage else None,
                                      lambda: self._finished(prompt, output, timing))
        except ConnectionResetError:  # the client went away (e.g. its timeout): nothing to answer
            if self.fixed is not None:
                self.in_flight -= 1  # no longer running (an engine request finishes in the engine)
            return web.Response(status=499)

    async def _stream(self, request: web.Request, chat: bool, rid: str, output: int, tokens, fault: str | None,
                      usage: dict | None, finished) -> web.StreamResponse:
        """Send the tokens as SSE events as they are made (with `fault`, if any); usage last."""
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
        await resp.prepare(request)
        created = int(time.time())
        # vLLM sends the chat role chunk on the engine's first output, i.e. with the first token
        # (serving_chat.py, `first_iteration`), not on arrival: clients that time TTFT from the
        # first chunk with `choices` (vllm bench serve --backend openai-chat) would measure ~0 otherwise.
        role = _event(_chunk(rid, self.name, created, chat, None, first=True)) if chat else b""
        token = _event(_chunk(rid, self.name, created, chat, None))  # encoded once: the hot path
        cut = output // 2 if fault in ("error_event", "drop", "stall") else output  # strikes after token `cut`
        sent = 0
        async for made in tokens:
            if role and made > 0:
                await resp.write(role)
                role = b""
            if fault == "malformed" and sent == 0:
                await resp.write(b'data: {"choices": [{"text": \n\n')
            if sent <= cut < made:  # token `cut` is out (none if 0) and more are due: strike
                await resp.write(token * (cut - sent))
                if fault == "error_event":
                    await resp.write(_event({"error": {"message": "emulated engine failure",
                                                       "type": "InternalServerError", "code": 500}}))
                    await resp.write(b"data: [DONE]\n\n")
                    return resp
                if fault == "drop":
                    request.transport.close()  # the connection dies mid-stream
                    return resp
                await asyncio.sleep(self.config.stall_s)
                sent = cut
            last = made == output
            await resp.write(token * (made - sent - last)
                             + (_event(_chunk(rid, self.name, created, chat, "length")) if last else b""))
            sent = made
        finished()
        if usage is not None:
            await resp.write(_event({"id": rid, "object": "chat.completion.chunk" if chat else "text_completion",
                                     "created": created, "model": self.name, "choices": [], "usage": usage}))
        await resp.write(b"data: [DONE]\n\n")
        return resp

    def _draw_fault(self) -> str | None:
        total = float(self.fault_p.sum())
        if total <= 0:
            return None
        u = self.rng.random()
        edges = np.cumsum(self.fault_p)
        k = int(np.searchsorted(edges, u, side="right"))
        return FAULTS[k] if k < len(FAULTS) else None

    def _tokens(self, prompt: int, output: int, arrived: float):
        """(async iterator of tokens made so far, timing source for /metrics)."""
        if self.fixed is not None:
            self.in_flight += 1
            return self.fixed.tokens(output, arrived), (arrived, None)
        seq, moved = self.engine.submit(prompt, output)
        return engine_tokens(seq, moved), (time.perf_counter(), seq)

    def _finished(self, prompt: int, output: int, timing) -> None:
        start, seq = timing
        if seq is None:
            self.in_flight -= 1
            speed = self.config.speedup
            e2e = (time.perf_counter() - start) * speed
            ttft = min(e2e, (self.fixed.ttft_s if self.fixed else 0.0) * speed)
            self.metrics.finished(prompt, output, 0.0, ttft, e2e)
            return
        end = self.engine.outcomes.e2e[seq.rid]
        end = end if end == end and end >= seq.ttft else self.engine.env.now
        self.metrics.finished(prompt, output, seq.sched - seq.arrival, seq.ttft - seq.arrival,
                              end - seq.arrival)


def _event(obj: dict) -> bytes:
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def _chunk(rid: str, model: str, created: int, chat: bool, finish: str | None, first: bool = False) -> dict:
    if chat:
        delta = {"role": "assistant", "content": ""} if first else {"content": " tok"}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return {"id": rid, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [choice]}
    return {"id": rid, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": " tok", "logprobs": None, "finish_reason": finish}]}


def _full_body(rid: str, model: str, chat: bool, output: int, usage: dict) -> dict:
    text = " tok" * output
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
        kind = "chat.completion"
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": "length"}
        kind = "text_completion"
    return {"id": rid, "object": kind, "created": int(time.time()), "model": model,
            "choices": [choice], "usage": usage}


SHUTDOWN_S = 0.1  # streams still in flight at Ctrl-C/SIGTERM get this long, then are cut


def serve(config: EmulatorConfig) -> int:
    """Run the emulator in the foreground until Ctrl-C or SIGTERM; returns that signal's number.
    aiohttp's own `run_app` waits up to a minute for open streams and then exits 0: a server
    stopped by a signal exits 130/143 within a second, as every melange command does."""
    import signal

    app = Emulator(config).app

    async def main() -> int:
        stop: asyncio.Future = asyncio.get_running_loop().create_future()
        for signum in (signal.SIGINT, signal.SIGTERM):
            asyncio.get_running_loop().add_signal_handler(signum, lambda s=signum: stop.done() or stop.set_result(s))
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_S)
        await runner.setup()
        try:
            await web.TCPSite(runner, config.host, config.port).start()
        except OSError as exc:
            await runner.cleanup()
            raise MelangeError(f"--host {config.host} --port {config.port}: cannot listen there "
                               f"({exc.strerror or exc})") from None
        try:
            return await stop
        finally:
            await runner.cleanup()

    return asyncio.run(main())


class AppThread:
    """An aiohttp app served from a background thread (tests, benchmarks): `with AppThread(make_app) as url:`.
    Port 0 takes a free one."""

    def __init__(self, make_app, host: str = "127.0.0.1", port: int = 0) -> None:
        self.make_app, self.host, self.port = make_app, host, port
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._error: BaseException | None = None

    def _run(self) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            runner = web.AppRunner(self.make_app(), access_log=None)
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, self.host, self.port)
            loop.run_until_complete(site.start())
            port = runner.addresses[0][1]
            self.url = f"http://{self.host}:{port}"
        except BaseException as exc:  # reported to the caller by __enter__
            self._error = exc
            self._ready.set()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def __enter__(self) -> str:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise self._error
        return self.url

    def __exit__(self, *exc) -> None:
        if self._loop is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


class EmulatorThread(AppThread):
    """The emulator on a background thread (tests, benchmarks): `with EmulatorThread(cfg) as url:`."""

    def __init__(self, config: EmulatorConfig) -> None:
        super().__init__(lambda: Emulator(config).app, config.host, config.port)
        self.config = config
