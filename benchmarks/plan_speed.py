"""How fast Mélange plans: `melange plan` on the default scenario, and a 36-point validated sweep.

    python benchmarks/plan_speed.py [--repeats 3] [--workers N] [--requests N] [--baselines]

default_plan_s: median wall time of the validation loop (solve -> simulate -> tighten, then
confirmation on fresh seeds) on the built-in scenario, with its CPU seconds beside it (the steadier
number on a shared machine); `--baselines` also times the validated single-type baselines. The sweep: the default scenario at slice factors 1, 2, 4, 8, 16, continuous x
rates 1, 2, 4, 8, 16, 32 req/s, every point validated, run once in one process and once on the
local process pool (fresh output directories, so nothing is skipped); both must give the same
table. Prints figures, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from melange.scenario import load_scenario
from melange.study import LocalExecutor, Sweep, run_sweep
from melange.validate import plan_and_validate, validated_baselines

AXES = {"slice_factor": [1, 2, 4, 8, 16, "continuous"], "rate": [1, 2, 4, 8, 16, 32]}
TIMING = ["solve_s", "sim_s", "wall_s"]


def time_default_plan(repeats: int) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds of the validation loop on the default scenario, `repeats` times."""
    times, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), _cpu_s()
        report = plan_and_validate(load_scenario())
        times.append(time.perf_counter() - start)
        cpus.append(_cpu_s() - cpu)
        assert report.best is not None, "the default scenario's plan should hold"
    return times, cpus


def _cpu_s() -> float:
    """CPU seconds used so far by this process and its finished children."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def time_sweep(workers: int, requests: int | None, out: Path):
    """(wall seconds, CPU seconds, table) of the 36-point validated sweep on `workers` processes."""
    sweep = Sweep.create("default", AXES, validate=True, requests=requests)
    start, cpu = time.perf_counter(), _cpu_s()
    table = run_sweep(sweep, out, executor=LocalExecutor(workers))
    return time.perf_counter() - start, _cpu_s() - cpu, table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--requests", type=int, help="simulated requests per round (default: the scenario's)")
    parser.add_argument("--baselines", action="store_true", help="also time the validated baselines")
    args = parser.parse_args()

    plans, plan_cpus = time_default_plan(args.repeats)
    print(f"default plan: {', '.join(f'{t:.2f}' for t in plans)} s (median {statistics.median(plans):.2f} s, "
          f"{statistics.median(plan_cpus):.2f} s CPU)")
    extra = {}
    if args.baselines:
        start, cpu = time.perf_counter(), _cpu_s()
        singles = validated_baselines(load_scenario())
        extra = {"baselines_wall_s": round(time.perf_counter() - start, 2),
                 "baselines_cpu_s": round(_cpu_s() - cpu, 2),
                 "baselines": {g: b.count for g, b in singles.items()}}
        print(f"validated baselines: {extra['baselines']} in {extra['baselines_wall_s']} s")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
        serial_s, serial_cpu, serial = time_sweep(1, args.requests, Path(tmp) / "serial")
        print(f"36-point validated sweep, 1 process: {serial_s:.1f} s wall, {serial_cpu:.1f} s CPU "
              f"({36 / serial_s * 60:.1f} points/min)")
        pool_s, pool_cpu, pool = time_sweep(args.workers, args.requests, Path(tmp) / "pool")
        print(f"36-point validated sweep, {args.workers} processes: {pool_s:.1f} s wall, {pool_cpu:.1f} s CPU "
              f"({36 / pool_s * 60:.1f} points/min)")
        print(f"load average after: {os.getloadavg()[0]:.1f} (other jobs share these cores: the pool "
              f"can only gain what the machine has idle)")
    same = pool.drop(columns=TIMING).equals(serial.drop(columns=TIMING))
    held = int(pool["held"].fillna(False).astype(bool).sum())
    print(f"pool speed-up {serial_s / pool_s:.2f}x on {args.workers} workers (cores: {os.cpu_count()}); "
          f"same table: {same}; {held}/36 plans held")
    print(json.dumps({"default_plan_s": round(statistics.median(plans), 3),
                      "default_plan_cpu_s": round(statistics.median(plan_cpus), 3), **extra,
                      "sweep_points_per_min": round(36 / pool_s * 60, 2),
                      "sweep_points_per_min_one_process": round(36 / serial_s * 60, 2),
                      "pool_speedup": round(serial_s / pool_s, 3), "workers": args.workers,
                      "cpu_s_one_process": round(serial_cpu, 1), "cpu_s_pool": round(pool_cpu, 1),
                      # cores the runs actually got: on a shared machine the pool may get no more than one
                      "cores_used_one_process": round(serial_cpu / serial_s, 2),
                      "cores_used_pool": round(pool_cpu / pool_s, 2),
                      "cores": os.cpu_count(), "same_table": bool(same), "plans_held": held}))


if __name__ == "__main__":
    main()
