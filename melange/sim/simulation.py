"""The fleet: a chain of SimPy timeouts that routes pre-drawn requests to GPU instances.

Scenario: `arrivals` (times and lengths drawn up front) enter at their absolute times; each goes
to the GPU type drawn from the plan's shares for its bucket, then to an instance of that type
chosen by the router, which batches it (see `instance.py`). `run()` continues until every arrived
request has finished, or stops at a horizon and reports what is still in flight.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import simpy

from melange.core import EngineConfig, MelangeError, Plan, Slo, StepTimeModel, Workload
from melange.metrics import RECORD_COLUMNS, to_frame
from melange.sim.arrivals import Arrivals
from melange.sim.instance import Instance
from melange.sim.requests import Outcomes, Seq
from melange.sim.result import SimResult, summarise
from melange.sim.router import ROUTERS, choose_types, type_table

PROGRESS_EVERY = 4096  # arrivals between progress callbacks


class Simulation:
    """One simulated fleet serving one set of arrivals."""

    def __init__(self, plan: Plan, arrivals: Arrivals, workload: Workload,
                 step_models: dict[str, StepTimeModel], engines: dict[str, EngineConfig],
                 rng: np.random.Generator, *, router: str = "least_work", exact: bool = False,
                 progress: Callable[[float], None] | None = None) -> None:
        if router not in ROUTERS:
            raise MelangeError(f"router: unknown {router!r} (choose from {', '.join(ROUTERS)})")
        self.env = simpy.Environment()
        self.arrivals, self.workload, self.progress = arrivals, workload, progress
        self.names = [g for g, n in plan.counts.items() if n > 0]
        self.types = choose_types(type_table(plan, self.names, workload.grid.shape), workload.grid,
                                  arrivals.input_tokens, arrivals.output_tokens, rng)
        self.outcomes = Outcomes(len(arrivals))
        self.instances: list[Instance] = []
        self.by_type: list[list[Instance]] = []
        self.work: list[list[int]] = []  # per type: outstanding tokens of each instance
        self.pickers = []
        for g in self.names:
            work = [0] * plan.counts[g]
            group = [Instance(self.env, len(self.instances) + k, g, step_models[g],
                              engines.get(g, EngineConfig()), self.outcomes, work, k, exact)
                     for k in range(plan.counts[g])]
            self.instances += group
            self.by_type.append(group)
            self.work.append(work)
            self.pickers.append(ROUTERS[router](rng.spawn(1)[0]))
        self.arrived = 0
        a = arrivals  # plain lists: indexing them is what the source does per request
        self._times, self._prompts = a.time_s.tolist(), a.input_tokens.tolist()
        self._outputs, self._types = a.output_tokens.tolist(), self.types.tolist()
        self._arrive()

    def _arrive(self, _event: simpy.Event | None = None) -> None:
        """Route every request due by now to an instance, then wait for the next one (a chain of
        timeouts with this callback, one event per distinct arrival time)."""
        env, times, rid = self.env, self._times, self.arrived
        # The timeout was for request `rid`: it is due even if now + (t - now) rounded below t.
        due = env.now if _event is None else max(env.now, times[rid])
        while rid < len(times) and times[rid] <= due:
            g = self._types[rid]
            k = self._pick(g, times[rid])
            self.by_type[g][k].submit(Seq(rid, self._prompts[rid], self._outputs[rid], times[rid]))
            rid += 1
            self.arrived = rid
            if self.progress is not None and rid % PROGRESS_EVERY == 1:
                self.progress(env.now)
        if rid < len(times):
            env.timeout(times[rid] - env.now).callbacks.append(self._arrive)

    def _pick(self, g: int, now: float) -> int:
        """The instance of type g a request arriving at `now` goes to."""
        return self.pickers[g].pick(self.work[g])

    def run(self, until: float | None = None) -> float:
        """Simulate until all arrived requests are done (or until `until` s); returns wall s."""
        start = time.perf_counter()
        self.env.run(until=until)
        if self.progress is not None:
            self.progress(self.env.now)
        return time.perf_counter() - start

    def departures(self) -> tuple[np.ndarray, np.ndarray]:
        """(arrival_s, finish_s) of every request that arrived so far: finish = arrival + e2e (the
        arrival itself for a failed one), NaN while still in flight; for `acceptance.judge`."""
        n = self.arrived
        arrival = self.arrivals.time_s[:n]
        finish = np.array(self.outcomes.e2e[:n], dtype=float)  # absolute completion times
        failed = np.array([e is not None for e in self.outcomes.error[:n]], dtype=bool)
        finish[failed] = arrival[failed]
        return arrival, finish

    def records(self) -> pd.DataFrame:
        """One row per finished or failed request, `RequestRecord` columns (in-flight ones left out)."""
        o, a = self.outcomes, self.arrivals
        n = self.arrived
        e2e = np.array(o.e2e[:n])
        error = np.array(o.error[:n], dtype=object)
        arrival = a.time_s[:n]
        names = np.array(self.names, dtype=object)
        frame = pd.DataFrame({
            "request_id": np.arange(n),
            "arrival_s": arrival,
            "input_tokens": a.input_tokens[:n],
            "output_tokens": a.output_tokens[:n],
            "bucket_in": a.bucket_in[:n],
            "bucket_out": a.bucket_out[:n],
            "gpu": names[self.types[:n]],
            "instance": np.array(o.instance[:n]),
            "queue_s": np.array(o.sched[:n]) - arrival,
            "ttft_s": np.array(o.ttft[:n]) - arrival,
            "e2e_s": e2e - arrival,
            "preemptions": np.array(o.preemptions[:n]),
            "error": error,
            "sent_s": arrival,  # the simulator sends every request on schedule
            "itl_s": None,  # token times are not kept
        }, columns=RECORD_COLUMNS)
        done = ~np.isnan(e2e) | (error != None)
        return frame[done].reset_index(drop=True)

    def result(self, slo: Slo, *, warmup_s: float = 0.0, wall_time_s: float = 0.0) -> SimResult:
        """Records with both TPOTs and `slo_met`, and the summary."""
        frame = to_frame(self.records(), slo)
        now = self.env.now
        stats = [inst.stats(now) for inst in self.instances]
        summary = summarise(frame, self.workload.grid, slo, n_requests=self.arrived,
                            in_flight=sum(s["in_flight"] for s in stats), instances=stats,
                            sim_time_s=now, wall_time_s=wall_time_s, warmup_s=warmup_s)
        return SimResult(frame, summary)
