"""Do the shipped sim-profiles hold? Each busy cell of the default scenario, run long at its own max rate.

Scenario: the built-in scenario's round-1 plan (the MILP on the shipped profiles) assigns traffic
to (bucket, GPU) cells; each such "busy" cell is one instance of that GPU fed only that bucket's
requests (lengths uniform in the bucket, Poisson) at the profile's own `max_rate`, for 20,000
requests with a seed the profile search never used. A cell holds when `melange.acceptance.judge`
passes it (stable, enough counted requests, SLO attainment met after warm-up); the plain
attainment over all 20k requests is printed too. One line per cell, then one JSON object.
Run: nice -n 10 python benchmarks/profile_hold.py [--requests N] [--seed S]
"""

from __future__ import annotations

import json
import sys
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from melange.acceptance import judge
from melange.core import Plan, Workload
from melange.optimizer import solve
from melange.scenario import load_scenario
from melange.sim import simulate


def busy_cells(sc) -> list[tuple[int, int, str]]:
    """(i, j, gpu) cells that carry traffic in the round-1 plan."""
    plan = solve(sc.workload, sc.gpus, sc.profiles, sc.solve)
    return [(int(i), int(j), g) for g, share in plan.share.items() if plan.counts.get(g, 0) > 0
            for i, j in zip(*np.nonzero((share > 0) & (sc.workload.distribution > 0)))]


def hold(cell: tuple[int, int, str], requests: int, seed: int) -> dict:
    """Run one cell at its profile's max rate; the verdict."""
    sc = load_scenario()
    i, j, gpu = cell
    grid = sc.workload.grid
    rate = float(sc.profiles[gpu].max_rate[i, j])
    onehot = np.zeros(grid.shape)
    onehot[i, j] = 1.0
    plan = Plan({gpu: 1}, {gpu: onehot}, cost=0.0)
    res = simulate(plan, Workload(grid, onehot, rate), {gpu: sc.step_models[gpu]},
                   {gpu: sc.engines[gpu]}, sc.slo, requests=requests, seed=seed)
    r = res.records.sort_values("request_id")
    arrival = r["arrival_s"].to_numpy()
    finish = arrival + r["e2e_s"].to_numpy()
    warmup = 0.1 * float(arrival.max())  # the first tenth of the run: the empty-system start
    v = judge(arrival, finish, r["slo_met"].to_numpy(), sc.slo.attainment, warmup_s=warmup)
    return {"cell": grid.label(i, j), "gpu": gpu, "rate": rate, "passed": v.passed,
            "reason": v.reason, "attainment_all": float(r["slo_met"].mean()),
            "attainment": v.attainment, "throughput_ratio": v.throughput_ratio}


def main() -> None:
    """Run every busy cell; print lines and the JSON summary."""
    args = sys.argv[1:]
    requests = int(args[args.index("--requests") + 1]) if "--requests" in args else 20_000
    seed = int(args[args.index("--seed") + 1]) if "--seed" in args else 424242
    cells = busy_cells(load_scenario())
    with ProcessPoolExecutor(2) as pool:
        results = list(pool.map(hold, cells, [requests] * len(cells), [seed] * len(cells)))
    for r in results:
        print(f"{r['gpu']:>10} {r['cell']:<28} {r['rate']:9.4f} req/s: "
              f"{'holds' if r['passed'] else 'FAILS'}  attainment(all) {r['attainment_all']:.4f}  {r['reason']}")
    print(json.dumps({"busy_cells": len(results), "held_judge": sum(r["passed"] for r in results),
                      "held_attainment": sum(r["attainment_all"] >= 0.99 for r in results),
                      "requests": requests, "seed": seed}))


if __name__ == "__main__":
    main()
