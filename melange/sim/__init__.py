"""Discrete-event simulation of a plan: SimPy events for the request source and each GPU
instance (vLLM-style continuous batching), with a fast path that sums runs of decode steps.

    result = simulate(plan, workload, step_models, engines, slo, requests=10_000, seed=1)
    result.summary["attainment"]["overall"]; result.records; result.write("out/")

To stop at a horizon and count what is still in flight, drive `Simulation` directly:
`sim = Simulation(plan, make_arrivals(workload, rng, requests=n), ...); sim.run(until=t)`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from melange.core import EngineConfig, Plan, Slo, StepTimeModel, Workload
from melange.sim.arrivals import Arrivals, make_arrivals
from melange.sim.plan_check import check_plan, check_size
from melange.sim.result import SimResult
from melange.sim.simulation import Simulation

__all__ = ["Arrivals", "SimResult", "Simulation", "check_plan", "make_arrivals", "simulate"]


def simulate(plan: Plan, workload: Workload, step_models: dict[str, StepTimeModel],
             engines: dict[str, EngineConfig], slo: Slo, *, requests: int | None = None,
             duration_s: float | None = None, seed: int = 0, router: str = "least_work",
             exact: bool = False, warmup_s: float = 0.0,
             progress: Callable[[float], None] | None = None) -> SimResult:
    """Serve `workload` with `plan` until every request arriving within the bound (`requests`
    and/or `duration_s`; default 10,000 requests, or the whole trace when replaying) is done.
    `progress` is called now and then with the simulated time (s). Same seed -> same records."""
    # Only GPUs with instances need a model here; the CLI also checks names against the scenario.
    check_plan(plan, workload, {*plan.counts, *plan.share}, simulable=step_models)
    check_size(workload, requests, duration_s)
    rng = np.random.default_rng(seed)
    arrivals = make_arrivals(workload, rng, requests=requests, duration_s=duration_s)
    sim = Simulation(plan, arrivals, workload, step_models, engines, rng, router=router,
                     exact=exact, progress=progress)
    wall = sim.run()
    return sim.result(slo, warmup_s=warmup_s, wall_time_s=wall)
