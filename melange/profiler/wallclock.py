"""The simulator's engine driven by the wall clock: what times the emulated server's tokens.

One `simpy.Environment` holds one `melange.sim.instance.Instance` in exact mode (every engine
step is its own event, so tokens appear at real step boundaries). Simulated time is wall time
since start times `speedup`. An asyncio task advances the environment up to "now" and sleeps until
the next event is due (or a request arrives); a request is a `Seq` whose `generated` count the
server streams as it grows. No second latency model: this is the code the simulator runs.

`FixedLatency` replaces the engine with configured TTFT and inter-token gaps, to measure the
client's own overhead against known latencies.
"""

from __future__ import annotations

import asyncio
import math
import time

import simpy
from simpy.core import StopSimulation

from melange.core import EngineConfig, MelangeError, StepTimeModel
from melange.sim.instance import Instance
from melange.sim.requests import Outcomes, Seq

GROW = 256  # request-id slots added at a time


class WallClockEngine:
    """One emulated GPU instance; `submit` returns the live `Seq`, `wait` blocks until it moves."""

    def __init__(self, gpu: str, model: StepTimeModel, engine: EngineConfig, speedup: float = 1.0) -> None:
        if not speedup > 0:
            raise MelangeError("--speedup: must be > 0")
        self.speedup = speedup
        self.env = simpy.Environment()
        self.outcomes = Outcomes(0)
        self.instance = Instance(self.env, 0, gpu, model, engine, self.outcomes, [0], 0, exact=True)
        self.free: list[int] = []
        self.live: dict[int, list] = {}  # rid -> [seq, event, tokens at the last wake-up]
        self.t0 = time.perf_counter()
        self._kick: asyncio.Future | None = None

    def sim_now(self) -> float:
        """Simulated seconds since the engine started."""
        return (time.perf_counter() - self.t0) * self.speedup

    def wall_of(self, sim_t: float) -> float:
        """perf_counter() time at which simulated time `sim_t` is reached."""
        return self.t0 + sim_t / self.speedup

    def advance(self) -> None:
        """Run the engine up to now; wake every request that produced tokens or finished."""
        target, env = self.sim_now(), self.env
        if target > env.now:
            env.run(until=target)
        while env.peek() <= env.now:  # events due now; SimPy may also leave its stop marker here
            try:
                env.step()
            except StopSimulation:
                pass
        done = []
        for rid, entry in self.live.items():
            seq = entry[0]
            if seq.generated != entry[2]:
                entry[2] = seq.generated
                entry[1].set()
            if seq.generated >= seq.output:
                done.append(rid)
        for rid in done:
            del self.live[rid]
            self.free.append(rid)

    def submit(self, prompt: int, output: int) -> tuple[Seq, asyncio.Event]:
        """Queue a request now; returns its live state and the event set when it progresses."""
        self.advance()
        if not self.free:
            start = self.outcomes.n
            self.outcomes.grow(GROW)
            self.free = list(range(start + GROW - 1, start - 1, -1))
        rid = self.free.pop()
        self.outcomes.error[rid] = None
        seq = Seq(rid, prompt, output, self.env.now)
        self.instance.submit(seq)
        if self.outcomes.error[rid] is not None:
            self.free.append(rid)
            raise MelangeError(f"request of {prompt + output} tokens exceeds the engine's "
                               f"{self.instance.max_len}-token limit")
        moved = asyncio.Event()
        self.live[rid] = [seq, moved, 0]
        if self._kick is not None:
            _wake(self._kick)
        return seq, moved

    async def drive(self) -> None:
        """Advance forever: to each next engine event on time, or at once when work arrives."""
        loop = asyncio.get_running_loop()
        while True:
            self.advance()
            nxt = self.env.peek()
            self._kick = wake = loop.create_future()
            timer = None
            if nxt != math.inf:
                delay = max(0.0, self.wall_of(nxt) - time.perf_counter())
                timer = loop.call_later(delay, _wake, wake)
            await wake
            if timer is not None:
                timer.cancel()

    def gauges(self) -> dict[str, float]:
        """Running and waiting requests and KV-cache use (0..1), for /metrics."""
        inst = self.instance
        return {"running": len(inst.running), "waiting": len(inst.waiting),
                "kv": (inst.total_blocks - inst.free) / max(inst.total_blocks, 1),
                "preemptions": inst.preemptions}


def _wake(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


async def engine_tokens(seq: Seq, moved: asyncio.Event):
    """Yield the number of tokens made so far each time `seq` produces more, until it is done."""
    sent = 0
    while sent < seq.output:
        await moved.wait()
        moved.clear()
        if seq.generated > sent:
            sent = seq.generated
            yield sent


class FixedLatency:
    """Configured latencies instead of an engine: the first token `ttft_s` after arrival, then one
    every `itl_s` (wall seconds, divided by `speedup`); no queueing, no capacity limit."""

    def __init__(self, ttft_s: float, itl_s: float, speedup: float = 1.0) -> None:
        if ttft_s < 0 or itl_s < 0:
            raise MelangeError("--fixed-ttft/--fixed-itl: must be >= 0")
        self.ttft_s, self.itl_s, self.speedup = ttft_s / speedup, itl_s / speedup, speedup

    async def tokens(self, output: int, start: float | None = None):
        """Yield 1..output at their due times after `start` (perf_counter; default now), sleeping
        to absolute deadlines (no drift)."""
        start = time.perf_counter() if start is None else start
        for k in range(1, output + 1):
            due = start + self.ttft_s + (k - 1) * self.itl_s
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            yield k
