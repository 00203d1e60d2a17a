"""Requests inside the simulated engine: a request's live state (`Seq`) and every request's
outcome (`Outcomes`, written in place by the instances, read by `Simulation.records`)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field


class Seq:
    """Live state of one request inside an instance."""

    __slots__ = (
        "arrival",
        "blocks",
        "generated",
        "kv",
        "output",
        "preemptions",
        "prefill_left",
        "prompt",
        "rid",
        "sched",
        "ttft",
    )

    def __init__(self, rid: int, prompt: int, output: int, arrival: float) -> None:
        self.rid = rid
        self.prompt = prompt
        self.output = output
        self.arrival = arrival
        self.generated = 0  # output tokens produced so far
        self.kv = 0  # tokens held in the KV cache (set when a prefill completes)
        self.blocks = 0  # KV blocks allocated
        self.prefill_left = prompt  # tokens still to prefill in the current (re)computation
        self.sched = -1.0  # time first admitted
        self.ttft = -1.0  # time of the first output token
        self.preemptions = 0


@dataclass
class Outcomes:
    """Per-request results written in place by the instances (index = request id)."""

    n: int
    sched: list[float] = field(init=False)
    ttft: list[float] = field(init=False)
    e2e: list[float] = field(init=False)
    instance: list[int] = field(init=False)
    preemptions: list[int] = field(init=False)
    error: list[str | None] = field(init=False)

    def __post_init__(self) -> None:
        nan = math.nan
        self.sched, self.ttft, self.e2e = [nan] * self.n, [nan] * self.n, [nan] * self.n
        self.instance, self.preemptions = [-1] * self.n, [0] * self.n
        self.error = [None] * self.n

    def grow(self, extra: int) -> None:
        """Make room for `extra` more request ids (a server that runs unbounded: the emulator)."""
        self.sched += [math.nan] * extra
        self.ttft += [math.nan] * extra
        self.e2e += [math.nan] * extra
        self.instance += [-1] * extra
        self.preemptions += [0] * extra
        self.error += [None] * extra
        self.n += extra
