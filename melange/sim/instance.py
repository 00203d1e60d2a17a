"""One GPU instance: vLLM-style continuous batching, driven by SimPy events.

Scenario: requests join a FCFS waiting queue. At each step boundary the scheduler admits waiting
requests into the running batch (at most `max_num_seqs`, only if their prompt's KV blocks fit,
keeping vLLM's 1 % watermark free unless the batch is empty), then runs one engine iteration that

- without chunked prefill: prefills the newly admitted prompts (a prefill-only step, which reads
  no decode KV), or else decodes one token for every running request (prefills first, as vLLM
  v0). A step's prompts total at most `prefill_cap` tokens; a prompt that does not fit whole waits
  for the next step (vLLM v0's token budget, see `prefill_cap`);
- with chunked prefill (`max_num_batched_tokens`): decodes every running request and spends the
  rest of the token budget on prompt chunks, continuing ones first (as vLLM v1).

A decode step that needs more KV blocks than are free preempts the newest running request: its
blocks are freed and it goes back to the front of the queue, to be recomputed (prompt + tokens so
far, prefilled again; that prefill yields its next token). The step that completes a prompt yields
the first token (TTFT); every later step yields one more; the step yielding the last one ends it.
A request longer (input + output) than the KV cache or `max_model_len` fails as "too_long".
Who may be admitted is decided in one place, `_admissible`, which the scheduler, the fast path's
"nothing changes at the next step" test (`_quiet`) and the cut on arrival all use.

Fast path: between arrivals and completions a pure-decode batch changes only by growing its
contexts, so a run of k decode steps is one SimPy timeout (see `steps.DecodeRun`). A request
routed here mid-run cuts it: the step in progress finishes, then the request joins at that step
boundary, exactly as in `exact` mode, which takes every step as its own event. Each step or run
is a timeout whose callback applies it and starts the next (`_next`), so an event costs no
generator resume and a cut no `Interrupt`. Events at exactly the same simulated time (an arrival
on the very float a step ends at: only contrived step times and arrival grids make them) are
taken in scheduling order, which the two modes need not share.
"""

from __future__ import annotations

from collections import deque

import simpy

from melange.core import EngineConfig, StepTimeModel
from melange.sim.requests import Outcomes, Seq
from melange.sim.steps import DecodeRun

WATERMARK = 0.01  # vLLM keeps 1 % of KV blocks free when admitting, so new prompts don't thrash


class Instance:
    """A GPU instance running continuous batching; `submit` hands it a routed request."""

    def __init__(self, env: simpy.Environment, index: int, gpu: str, model: StepTimeModel,
                 engine: EngineConfig, outcomes: Outcomes, type_work: list[int], slot: int,
                 exact: bool = False) -> None:
        self.env, self.index, self.gpu, self.model = env, index, gpu, model
        self.exact = exact
        self.outcomes = outcomes
        self.type_work, self.slot = type_work, slot  # router's view: outstanding tokens
        self.block = engine.block_size
        self.total_blocks = model.kv_capacity_tokens // engine.block_size
        self.watermark = int(WATERMARK * self.total_blocks)
        self.max_len = self.total_blocks * self.block  # alone, a request may use the whole cache
        if engine.max_model_len is not None:
            self.max_len = min(self.max_len, engine.max_model_len)
        self.cap = engine.max_num_seqs
        self.budget = engine.max_num_batched_tokens  # chunked prefill's token budget, or None
        # Prompt tokens one step may prefill without chunked prefill: vLLM v0's scheduler
        # (_schedule_prefills) stops admitting at the first prompt that would overflow it.
        self.prefill_cap = engine.v0_token_budget(self.max_len)
        self.waiting: deque[Seq] = deque()
        self.running: list[Seq] = []  # admission order: the newest is last
        self.prefilling: list[Seq] = []  # admitted, prompt not yet complete (admission order)
        self.free = self.total_blocks
        self.kv_tokens = 0  # KV tokens held by decode-phase sequences
        # statistics
        self.busy_s = 0.0
        self.kv_area = 0.0  # block-seconds in use
        self.kv_peak = 0
        self.preemptions = 0
        self.served = 0
        self.failed = 0
        self.in_system = 0
        self.in_system_area = 0.0  # request-seconds, for Little's law
        self._last_t = 0.0
        # The engine is a chain of SimPy timeouts with callbacks (no generator process: a step
        # boundary costs one event and no resume). `_timer` is the pending decode run's end; an
        # arrival that cuts the run short schedules a new end, and the old timer, no longer
        # `_timer`, fires into nothing.
        self._idle = True  # nothing to run: the next arrival starts the engine
        self._timer: simpy.Event | None = None
        self._step: tuple | None = None  # (chunks, decodes, dt) of the step in progress
        self._run: DecodeRun | None = None  # the decode run in progress, cuttable while set
        self._run_seqs: list[Seq] = []
        self._t0 = 0.0  # when the run's first decode step starts
        self._done, self._dt = 0, 0.0  # steps the run will have done when `_timer` fires, and their time
        self._reserved = 0  # blocks set aside for the next decode step

    # --- arrivals ------------------------------------------------------------------------

    def submit(self, seq: Seq) -> None:
        """Queue a request; wake the instance or cut its decode run short so it can join."""
        if seq.prompt + seq.output > self.max_len:
            # It could never fit: record the failure instead of letting it block the queue.
            self.outcomes.error[seq.rid] = "too_long"
            self.outcomes.instance[seq.rid] = self.index
            self.failed += 1
            return
        now = self.env.now  # time-integral of requests in system, for Little's law
        self.in_system_area += self.in_system * (now - self._last_t)
        self._last_t = now
        self.in_system += 1
        self.type_work[self.slot] += seq.prompt + seq.output
        self.waiting.append(seq)
        if self._idle:
            # Start at a zero-delay event, so requests arriving at this same instant join too.
            self._idle = False
            self._later(0.0, self._next)
        elif (self._run is not None and len(self.waiting) == 1
              and self._admissible(seq, self._new_prompt_budget())):
            # Blocks only shrink during a run, so `free` here is an upper bound: a request it
            # rules out could not join at the next step either. The step in progress (or the
            # folded prefill step) finishes, then the run stops and the request joins.
            run, t0 = self._run, self._t0
            self._run = None
            done, dt = run.cut(now - t0) if now > t0 else (0, 0.0)
            if done < run.k:
                self._done, self._dt = done, dt
                self._timer = self._later(max(0.0, t0 + dt - now), self._run_end)

    # --- the engine ----------------------------------------------------------------------

    def _later(self, delay: float, callback) -> simpy.Event:
        """A timeout `delay` seconds from now that calls `callback`."""
        event = self.env.timeout(delay)
        event.callbacks.append(callback)
        return event

    def _next(self, _event: simpy.Event | None = None) -> None:
        """At a step boundary, with the last step applied: start the next step or run, or idle."""
        if not self.running and not self.waiting:
            self._idle = True
            return
        env = self.env
        chunks, decodes, preempted = self._schedule()
        lead = 0.0  # a prefill step folded into the front of the decode run below
        if chunks or preempted or self.exact:
            # kv_tokens: KV held by decode-phase seqs, read only by a step that decodes
            dt = self.model.step_time(sum(c for _, c in chunks), len(decodes),
                                      self.kv_tokens if decodes else 0)
            if preempted or self.exact or not self._quiet(chunks, decodes):
                self._step = (chunks, decodes, dt)
                self._later(dt, self._step_end)
                return
            # Nobody leaves or could join at the step's end: apply it now, stamped with its
            # end time, and let the decode run follow in the same event.
            self._finish_step(chunks, decodes, dt, env.now + dt)
            lead, decodes = dt, self.running
        else:
            self.free += self._reserved  # _finish_run allocates the run's blocks itself
        # Pure decode: fast-forward to the next completion or the last KV-safe step.
        n = len(decodes)
        k = min([s.output - s.generated for s in decodes])
        safe = self.block * (self.free // n)  # each seq takes <= ceil(k/B) new blocks in k steps
        if safe < k:
            k = safe if safe > 0 else 1  # one step is safe: _make_room checked its blocks
        run = DecodeRun(self.model, n, self.kv_tokens, k)
        self._run, self._run_seqs, self._t0 = run, decodes, env.now + lead
        self._done, self._dt = k, run.total
        self._timer = timer = env.timeout(lead + run.total)  # _later, inlined: once per run
        timer.callbacks.append(self._run_end)

    def _step_end(self, _event: simpy.Event) -> None:
        chunks, decodes, dt = self._step
        self._finish_step(chunks, decodes, dt, self.env.now)
        self._next()

    def _run_end(self, event: simpy.Event) -> None:
        if event is not self._timer:
            return  # the run was cut short: a later timer ends it
        self._run = None
        self._finish_run(self._run_seqs, self._done, self._dt)
        self._next()

    def _quiet(self, chunks: list[tuple[Seq, int]], decodes: list[Seq]) -> bool:
        """Whether, after this step, the next ones are pure decode with no completion at the
        step's end, no admission and no preemption, exactly as the step-by-step engine finds."""
        if self.budget is not None and (self.waiting or len(chunks) < len(self.prefilling)
                                        or any(c < s.prefill_left for s, c in chunks)):
            return False  # chunked prefill: prompt work or a new budget left for the next step
        if self.waiting and self._admissible(self.waiting[0], self._new_prompt_budget()):
            return False  # the step's budget held the head back: it joins at the next step
        for s in decodes:
            if s.generated + 1 == s.output:
                return False
        for s, _ in chunks:
            if s.generated + 1 == s.output:
                return False
        return self.free >= len(self.running)  # each seq needs <= 1 new block per step

    # --- scheduling ----------------------------------------------------------------------

    def _schedule(self) -> tuple[list[tuple[Seq, int]], list[Seq], bool]:
        """Admit and preempt for the next step: (prefill chunks, decode seqs, preempted?)."""
        if self.budget is None:
            if self.waiting:
                chunks = self._admit(self.prefill_cap)
                if chunks:
                    return chunks, [], False  # prefill-only step
            decodes, preempted = self._make_room()
            return [], decodes, preempted
        decodes, preempted = self._make_room()
        if decodes is self.running:
            decodes = decodes.copy()  # admissions below append to running
        budget = self.budget - len(decodes)
        chunks = []
        for s in self.prefilling:
            if budget <= 0:
                break
            c = min(s.prefill_left, budget)
            chunks.append((s, c))
            budget -= c
        if not preempted and budget > 0 and self.waiting:
            chunks += self._admit(budget)
        return chunks, decodes, preempted

    def _new_prompt_budget(self) -> float:
        """Prompt tokens a fresh step could admit: the chunked budget left after every running
        sequence's decode token, or the prefill cap."""
        if self.budget is None:
            return self.prefill_cap
        return self.budget - len(self.running)

    def _admissible(self, s: Seq, budget: float) -> bool:
        """THE admission rule: a seat, its prompt's KV blocks (keeping the watermark free unless
        the batch is empty), and token budget: any with chunked prefill, the whole prompt without."""
        if len(self.running) >= self.cap or budget <= 0:
            return False
        if self.budget is None and s.prefill_left > budget:
            return False
        need = -(-s.prefill_left // self.block)
        return need <= self.free - (self.watermark if self.running else 0)

    def _admit(self, budget: float) -> list[tuple[Seq, int]]:
        """Move waiting requests into the batch while `_admissible` allows."""
        chunks = []
        waiting, running, block = self.waiting, self.running, self.block
        while waiting and self._admissible(waiting[0], budget):
            s = waiting[0]
            need = -(-s.prefill_left // block)
            waiting.popleft()
            self.free -= need
            s.blocks = need
            if s.sched < 0:
                s.sched = self.env.now
            running.append(s)
            self.prefilling.append(s)
            c = min(s.prefill_left, budget)
            chunks.append((s, c))
            budget -= c
        return chunks

    def _make_room(self) -> tuple[list[Seq], bool]:
        """Decode-phase sequences for the next step, preempting the newest until blocks suffice."""
        running, block = self.running, self.block
        if self.budget is None and not self.exact and self.free >= len(running):
            # Fast path: no preemption possible and a decode run follows, which counts its own
            # blocks; skip the per-sequence count.
            self._reserved = 0
            return running, False
        decodes = running if not self.prefilling else [s for s in running if s.prefill_left == 0]
        need = [s.kv % block for s in decodes].count(0)  # full last block -> one more
        preempted = False
        while need > self.free:
            victim = running.pop()
            if victim.prefill_left == 0:
                if decodes is not running:
                    decodes.pop()
                if victim.kv % block == 0:
                    need -= 1
            else:
                self.prefilling.pop()
            self._preempt(victim)
            preempted = True
        self.free -= need  # reserve this step's new blocks before anything is admitted
        self._reserved = need
        return decodes, preempted

    def _preempt(self, s: Seq) -> None:
        self.free += s.blocks
        if s.prefill_left == 0:
            self.kv_tokens -= s.kv
        s.blocks = s.kv = 0
        s.prefill_left = s.prompt + s.generated  # recompute everything produced so far
        s.preemptions += 1
        self.preemptions += 1
        self.waiting.appendleft(s)

    # --- bookkeeping after a step or a run -----------------------------------------------

    def _finish_step(self, chunks: list[tuple[Seq, int]], decodes: list[Seq], dt: float,
                     now: float) -> None:
        block = self.block
        finished = False
        for s in decodes:
            if s.kv % block == 0:
                s.blocks += 1  # reserved in _make_room
            s.kv += 1
            s.generated += 1
            if s.generated == s.output:
                finished = True
        self.kv_tokens += len(decodes)
        for s, c in chunks:
            s.prefill_left -= c
            if s.prefill_left == 0:
                self.prefilling.remove(s)
                s.kv = s.prompt + s.generated
                self.kv_tokens += s.kv
                s.generated += 1
                if s.ttft < 0:
                    s.ttft = now
                if s.generated == s.output:
                    finished = True
        used = self.total_blocks - self.free
        self.busy_s += dt
        self.kv_area += used * dt
        self.kv_peak = max(self.kv_peak, used)
        if finished:
            self._complete()

    def _finish_run(self, decodes: list[Seq], k: int, dt: float) -> None:
        block = self.block
        free = self.free
        used_before = self.total_blocks - free
        finished = False
        for s in decodes:
            s.kv += k
            s.generated += k
            blocks = -(-s.kv // block)
            free -= blocks - s.blocks
            s.blocks = blocks
            if s.generated == s.output:
                finished = True
        self.free = free
        self.kv_tokens += k * len(decodes)
        used = self.total_blocks - free  # blocks only grow during a run: trapezoid for the mean
        self.busy_s += dt
        self.kv_area += (used_before + used) / 2 * dt
        self.kv_peak = max(self.kv_peak, used)
        if finished:
            self._complete()

    def _complete(self) -> None:
        """Retire every sequence that produced its last token."""
        now, out = self.env.now, self.outcomes
        self.in_system_area += self.in_system * (now - self._last_t)
        self._last_t = now
        keep = []
        for s in self.running:
            if s.generated < s.output:
                keep.append(s)
                continue
            self.free += s.blocks
            self.kv_tokens -= s.kv
            self.type_work[self.slot] -= s.prompt + s.output
            rid = s.rid
            out.sched[rid], out.ttft[rid], out.e2e[rid] = s.sched, s.ttft, now
            out.instance[rid], out.preemptions[rid] = self.index, s.preemptions
            self.served += 1
            self.in_system -= 1
        self.running = keep

    # --- statistics ----------------------------------------------------------------------

    def stats(self, sim_time: float) -> dict:
        """Utilisation (busy share), KV use (mean, peak), preemptions, requests, mean in system."""
        self.in_system_area += self.in_system * (sim_time - self._last_t)
        self._last_t = sim_time
        span = sim_time if sim_time > 0 else 1.0
        return {
            "gpu": self.gpu,
            "instance": self.index,
            "utilisation": self.busy_s / span,
            "kv_mean": self.kv_area / span / max(self.total_blocks, 1),
            "kv_peak": self.kv_peak / max(self.total_blocks, 1),
            "preemptions": self.preemptions,
            "completed": self.served,
            "failed": self.failed,
            "in_flight": len(self.waiting) + len(self.running),
            "mean_in_system": self.in_system_area / span,
        }
