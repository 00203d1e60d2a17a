"""Measured profiles: a load-generating client for OpenAI-compatible servers, the per-bucket rate
search, and an emulated server timed by the simulator's own engine (so all of it runs without a
GPU).

    client.py          streaming HTTP client, SSE parsing, one RequestRecord per request
    schedule.py        send times (Poisson/gamma) and request lengths, drawn ahead from a seed
    search.py          one point's size and verdict (melange.rate_search's trials, melange.acceptance)
    store.py           append-only JSONL of every record and finished point (resume)
    run.py             a whole profile: probe, search every bucket, fit the step model, document
    measure.py         the job behind `melange profile --url/--serve/--from-results`
    progress.py        the live display (rich)
    wallclock.py       the simulator's Instance driven by the wall clock (or fixed latencies)
    emulator.py        the OpenAI-compatible aiohttp server around it (+ prom.py: /metrics)
    launcher.py        `vllm serve …` as a subprocess
    results_import.py  profiles from `vllm bench serve` and GuideLLM result files
"""
