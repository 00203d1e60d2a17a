"""How long `melange plan` takes on the built-in scenario, and where the time goes.

Runs the validation loop (solve → simulate → tighten, then confirmation on fresh seeds) on the
default scenario, optionally with the validated baselines, and prints the rounds, the number of
simulated runs and the wall and CPU seconds. Wall time includes other processes' load on a shared
machine; CPU seconds are the steadier number. Prints one JSON object last.
Run: python benchmarks/plan_speed.py [--baselines] [--workers N]
"""

from __future__ import annotations

import json
import sys
import time

from melange.scenario import load_scenario
from melange.validate import plan_and_validate, validated_baselines


def main() -> None:
    workers = int(sys.argv[sys.argv.index("--workers") + 1]) if "--workers" in sys.argv else 1
    sc = load_scenario()
    notes: list[str] = []
    wall, cpu = time.perf_counter(), time.process_time()
    report = plan_and_validate(sc, workers=workers, progress=notes.append)
    plan_wall, plan_cpu = time.perf_counter() - wall, time.process_time() - cpu
    for r in report.rounds:
        print(f"round {r.index}: ${r.plan.cost:.3f}/h, held {r.held}, {r.reason or ''}")
    result = {"plan_wall_s": round(plan_wall, 2), "plan_cpu_s": round(plan_cpu, 2),
              "rounds": len(report.rounds), "runs": sum(n.startswith(("round", "confirming")) for n in notes),
              "held": report.held, "cost": None if report.best is None else report.best.cost,
              "workers": workers}
    if "--baselines" in sys.argv:
        wall, cpu = time.perf_counter(), time.process_time()
        singles = validated_baselines(sc, workers=workers)
        result["baselines_wall_s"] = round(time.perf_counter() - wall, 2)
        result["baselines_cpu_s"] = round(time.process_time() - cpu, 2)  # the parent's only with workers
        result["baselines"] = {g: b.count for g, b in singles.items()}
    print(f"plan: {plan_wall:.1f} s wall, {plan_cpu:.1f} s CPU, {result['runs']} simulated runs")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
