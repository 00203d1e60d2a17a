"""Solver speed: our counting MILP vs the seed's one-binary-per-slice MILP, same instances.

Run: python benchmarks/solver.py [--quick]
Prints one line per instance, then a JSON summary as the last line.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from pathlib import Path

import mip
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # for tests.per_slice

from melange.core import SolveOptions  # noqa: E402
from melange.optimizer import build_model, make_problem  # noqa: E402
from melange.optimizer.instances import random_instance  # noqa: E402
from tests.per_slice import build_per_slice  # noqa: E402

PER_SLICE_LIMIT_S = 60.0


def timed(model: mip.Model, limit: float) -> tuple[float, float | None, bool]:
    """(wall seconds, objective, solved to optimality) of one optimize call."""
    start = time.perf_counter()
    status = model.optimize(max_seconds=limit)
    wall = time.perf_counter() - start
    return wall, model.objective_value, status == mip.OptimizationStatus.OPTIMAL


def run(label: str, seeds, n_in, n_out, n_gpus, rates, slice_factors) -> dict:
    """Solve each instance with both formulations (HiGHS) and CBC on ours; print one line each."""
    ours, per_slice, cbc_wrong, cbc_nocut_wrong = [], [], 0, 0
    for seed in seeds:
        rng = np.random.default_rng(seed)
        S = int(rng.choice(slice_factors))
        workload, gpus, profiles = random_instance(rng, n_in, n_out, n_gpus, rate=float(rng.choice(rates)))
        problem = make_problem(workload, gpus, profiles, SolveOptions(slice_factor=S))
        start = time.perf_counter()
        model, _, _ = build_model(problem, S)
        t_ours, cost, ok = timed(model, 60)
        t_ours = time.perf_counter() - start
        start = time.perf_counter()
        model, _, _ = build_per_slice(problem, S)
        _, cost_ps, ok_ps = timed(model, PER_SLICE_LIMIT_S)
        t_ps = time.perf_counter() - start
        cbc = build_model(problem, S, "cbc")[0]
        cbc.cuts = -1  # CBC as python-mip ships it (cuts on)
        _, cost_cbc, _ = timed(cbc, 60)
        cbc_wrong += cost_cbc is None or abs(cost_cbc - cost) > 1e-6
        _, cost_nocut, _ = timed(build_model(problem, S, "cbc")[0], 60)
        cbc_nocut_wrong += cost_nocut is None or abs(cost_nocut - cost) > 1e-6
        ours.append(t_ours)
        per_slice.append(t_ps)
        same = "same optimum" if ok_ps and abs(cost_ps - cost) < 1e-6 else (
            "per-slice hit time limit" if not ok_ps else f"MISMATCH {cost_ps}")
        print(f"{label} seed={seed} S={S} rate={workload.rate:g}: ours {t_ours:.3f} s, per-slice "
              f"{t_ps:.3f} s, cost {cost:.3f} ({same}); CBC cuts-on {cost_cbc}, cuts-off {cost_nocut}")
    return {"ours": ours, "per_slice": per_slice, "cbc_cuts_on_wrong": cbc_wrong,
            "cbc_cuts_off_wrong": cbc_nocut_wrong, "n": len(ours)}


def main() -> None:
    """Paper-size and large instances, side by side."""
    quick = "--quick" in sys.argv
    paper = run("paper", range(20 if not quick else 5), 10, 6, 4, [1, 2, 4, 8, 16, 32], [8])
    large = run("large", range(100, 116 if not quick else 102), 10, 10, 8, [8, 16, 32, 64], [16, 24, 32])
    med = statistics.median
    summary = {
        "paper_median_s": round(med(paper["ours"]), 4),
        "large_median_s": round(med(large["ours"]), 4),
        "per_slice_paper_median_s": round(med(paper["per_slice"]), 4),
        "per_slice_large_median_s": round(med(large["per_slice"]), 4),
        "large_speedup_median": round(med(large["per_slice"]) / med(large["ours"]), 1),
        "large_speedup_per_instance_median": round(med([p / o for p, o in zip(large["per_slice"], large["ours"])]), 1),
        "paper_instances": paper["n"],
        "large_instances": large["n"],
        "per_slice_time_limit_s": PER_SLICE_LIMIT_S,
        "cbc_cuts_on_wrong": f"{paper['cbc_cuts_on_wrong'] + large['cbc_cuts_on_wrong']}/{paper['n'] + large['n']}",
        "cbc_cuts_off_wrong": f"{paper['cbc_cuts_off_wrong'] + large['cbc_cuts_off_wrong']}/{paper['n'] + large['n']}",
        "backend": "highs",
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
