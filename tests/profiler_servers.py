"""Small OpenAI-compatible servers for the profiler tests, each on a background thread.

`other_server_app` behaves unlike `melange emulate`: chat only (no /v1/completions), no
/tokenize, usage sent only with the last content chunk (not a separate `choices: []` chunk),
`ignore_eos`/`min_tokens` ignored, and a fixed number of slots (requests beyond them wait), so
it has a capacity to find. `short=True` makes it stop one token early.
"""

from __future__ import annotations

import asyncio
import json

from aiohttp import web

from melange.profiler.emulator import AppThread


def other_server_app(model: str = "other-model", slots: int = 4, token_s: float = 0.002,
                     short: bool = False) -> web.Application:
    """The aiohttp app described in the module docstring."""
    gate = asyncio.Semaphore(slots)

    async def chat(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        if body.get("model") != model:
            return web.json_response({"error": {"message": "unknown model"}}, status=404)
        n = int(body.get("max_tokens", 16)) - (1 if short else 0)
        prompt = sum(len(str(m.get("content", "")).split()) for m in body["messages"])
        async with gate:
            resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await resp.prepare(request)
            for k in range(n):
                await asyncio.sleep(token_s)
                chunk = {"id": "x", "object": "chat.completion.chunk", "model": model,
                         "choices": [{"index": 0, "delta": {"content": f" w{k}"},
                                      "finish_reason": "length" if k == n - 1 else None}]}
                if k == n - 1:
                    chunk["usage"] = {"prompt_tokens": prompt, "completion_tokens": n,
                                      "total_tokens": prompt + n}
                await resp.write(f"data: {json.dumps(chunk)}\r\n\r\n".encode())
            await resp.write(b"data: [DONE]\r\n\r\n")
            return resp

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", chat), web.get("/health", health)])
    return app


# Serve an aiohttp app on 127.0.0.1 (free port) from a thread: `with ServerThread(make_app) as url`.
ServerThread = AppThread
