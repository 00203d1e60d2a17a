"""Solver speed: our counting MILP vs the seed's one-binary-per-slice MILP, same instances;
cloud-scale tiers (20x10 buckets x 16 types, 40x20 x 24, slice factor 32), solve_many, and joint
fleets (2 models x 3 SLO classes x 12 instance types under shared GPU caps).

Run: nice python benchmarks/solver.py [--quick] [--cloud-only] [--fleet-only [--save docs/solver_fleet.json]]
Prints one line per instance, then a JSON summary as the last line. Times are wall seconds and
this process's CPU seconds (the CPU figure is the fairer one on a shared machine).
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

from dataclasses import replace  # noqa: E402

from melange.core import SolveOptions  # noqa: E402
from melange.optimizer import build_model, make_problem, solve, solve_many, solve_problem  # noqa: E402
from melange.optimizer.instances import fleet_instance, random_instance  # noqa: E402
from melange.optimizer.joint import Shared, solve_joint  # noqa: E402
from tests.per_slice import build_per_slice  # noqa: E402

PER_SLICE_LIMIT_S = 60.0
ROOT = Path(__file__).resolve().parent.parent


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
        cost = solve_problem(problem, SolveOptions(slice_factor=S)).cost
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


CLOUD_TIERS = {"20x10x16": (20, 10, 16, 64.0), "40x20x24": (40, 20, 24, 256.0)}


def cloud(label: str, seeds) -> dict:
    """Slice factor 32 at the default time limit: wall and CPU seconds, share proven optimal."""
    n_in, n_out, n_gpus, rate = CLOUD_TIERS[label]
    wall, cpu, proven = [], [], 0
    for seed in seeds:
        workload, gpus, profiles = random_instance(np.random.default_rng(1000 + seed), n_in, n_out, n_gpus, rate=rate)
        w0, c0 = time.perf_counter(), time.process_time()
        plan = solve(workload, gpus, profiles, SolveOptions(slice_factor=32))
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        proven += plan.status == "optimal"
        print(f"{label} seed={1000 + seed}: {plan.status}, ${plan.cost:.3f}/h, gap {plan.gap:.2%}, "
              f"{wall[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU", flush=True)
    return {"median_s": round(statistics.median(wall), 3), "median_cpu_s": round(statistics.median(cpu), 3),
            "proven_optimal": f"{proven}/{len(wall)}"}


def many(label: str, n_in: int, n_out: int, n_gpus: int, rates, factors) -> dict:
    """solve_many (one built model) against one solve per point; same costs required."""
    workload, gpus, profiles = random_instance(np.random.default_rng(7), n_in, n_out, n_gpus, rate=rates[0])
    start = time.perf_counter()
    plans = solve_many(workload, gpus, profiles, rates, factors)
    t_many = time.perf_counter() - start
    start = time.perf_counter()
    alone = [solve(replace(workload, rate=r), gpus, profiles, SolveOptions(slice_factor=S)) for r in rates for S in factors]
    t_alone = time.perf_counter() - start
    same = all(abs(a.cost - b.cost) < 1e-6 for a, b in zip(plans, alone))
    print(f"solve_many {label}: {len(plans)} points in {t_many:.2f} s vs {t_alone:.2f} s one by one "
          f"({'same costs' if same else 'COST MISMATCH'})", flush=True)
    return {"points": len(plans), "many_s": round(t_many, 3), "one_by_one_s": round(t_alone, 3), "same_costs": same}


def fleet(label: str, seeds, rough: bool = False) -> dict:
    """Joint fleets: 2 models x 3 SLO classes x 12 (GPU x TP) types each, paper-size grid, slice
    factor 8, the two most used premium GPUs capped at half their unconstrained use."""
    wall, cpu, proven, methods = [], [], 0, {}
    for seed in seeds:
        services, hw = fleet_instance(np.random.default_rng(seed), rough=rough)
        opts = SolveOptions(slice_factor=8)
        problems = {s: make_problem(w, g, p, opts) for s, (w, g, p) in services.items()}
        every = {h for per in hw.values() for h, _ in per.values()}
        used = Shared({h: 10 ** 9 for h in every}, None, hw).used(solve_joint(problems, Shared({}, None, hw), opts).counts())
        caps = {h: used[h] // 2 for h in ("hw5", "hw4", "hw3", "hw2") if used.get(h)}
        caps = dict(list(caps.items())[:2])
        w0, c0 = time.perf_counter(), time.process_time()
        joint = solve_joint(problems, Shared(caps, None, hw), opts)
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
        proven += joint.status == "optimal"
        methods[joint.method] = methods.get(joint.method, 0) + 1
        print(f"fleet {label} seed={seed}: {joint.status} ({joint.method}), ${joint.cost:.3f}/h vs ${joint.separable_cost:.3f}/h "
              f"uncapped, caps {caps}, gap {joint.gap:.2%}, {wall[-1]:.2f} s wall, {cpu[-1]:.2f} s CPU", flush=True)
    return {"median_s": round(statistics.median(wall), 3), "max_s": round(max(wall), 3),
            "median_cpu_s": round(statistics.median(cpu), 3), "proven_optimal": f"{proven}/{len(wall)}",
            "methods": methods, "services": 6, "types_per_service": 12}


def main() -> None:
    """Paper-size and large instances side by side, the cloud tiers, fleets, and solve_many."""
    quick = "--quick" in sys.argv
    n = 2 if quick else 5
    summary: dict = {"fleet_2x3x12": fleet("2x3x12", range(3 if quick else 11)),
                     "fleet_2x3x12_rough": fleet("2x3x12 rough", range(2 if quick else 5), rough=True)}
    if "--fleet-only" in sys.argv:
        if "--save" in sys.argv:  # the README's fleet-solver line (scripts/readme_figures.py)
            (ROOT / sys.argv[sys.argv.index("--save") + 1]).write_text(json.dumps(summary, indent=1) + "\n")
        print(json.dumps(summary))
        return
    summary |= {f"cloud_{label}": cloud(label, range(n)) for label in CLOUD_TIERS}
    summary["solve_many_paper"] = many("paper 10x6x4", 10, 6, 4, [2.0, 4.0, 8.0, 16.0, 32.0], [1, 2, 4, 8, 16, 32])
    summary["solve_many_20x10x16"] = many("20x10x16", 20, 10, 16, [32.0, 64.0], [8, 16, 32])
    if "--cloud-only" in sys.argv:
        print(json.dumps(summary))
        return
    paper = run("paper", range(20 if not quick else 5), 10, 6, 4, [1, 2, 4, 8, 16, 32], [8])
    large = run("large", range(100, 116 if not quick else 102), 10, 10, 8, [8, 16, 32, 64], [16, 24, 32])
    med = statistics.median
    summary |= {
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
