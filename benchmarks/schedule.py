"""Plan the day: four strategies on the same replay, the solver's speed, and a day at its real rate.

    python benchmarks/schedule.py [--scale 0.1] [--rounds 4] [--workers 2] [--quick]

1. ServeGen (scenario servegen-day: day 8 of m-large, 10-minute windows, a tenth of the rate, the
   default scenario's GPUs and production SLO): static (sized on the forecast), reactive (AIBrix-
   style, every 60 s from the last 240 s), day-ahead (planned on a week of history), oracle
   (planned on the day itself); each replayed on the same fresh seed.
2. The Azure conversation hour (default scenario, 5-minute windows, rate x8 so the fleet has
   something to change): the same four, the forecast being the previous window.
3. Solver: a ServeGen day at its real rate (144 windows, four types, the paper grid) and a week
   of hourly windows, each with its status and gap.
4. A ServeGen day at its real rate replayed in parts on the process pool (requests, seconds), and
   the split replay against the single-process one on a shorter span (share of windows whose
   attainment lies in the other's 95 % interval).
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from melange.load import Load, read_load  # noqa: E402
from melange.scenario import load_scenario  # noqa: E402
from melange.schedule import resolve  # noqa: E402
from melange.schedule.compare import compare  # noqa: E402
from melange.schedule.milp import ScheduleOptions, solve_schedule  # noqa: E402
from melange.schedule.replay import agreement, fleet_of_schedule, replay  # noqa: E402
from melange.study.executor import make_executor  # noqa: E402


def hourly(load: Load, per: int) -> Load:
    """`per` windows merged into one: mean rate, rate-weighted mix, the burstiest window's cv."""
    T = load.windows // per
    rate = load.rate[:T * per].reshape(T, per)
    mix = np.einsum("tp,tpij->tij", rate, load.distribution[:T * per].reshape(T, per, *load.grid.shape))
    total = mix.sum(axis=(1, 2), keepdims=True)
    mix = np.where(total > 0, mix / np.where(total > 0, total, 1.0), 0.0)
    return Load(f"{load.name} hourly", load.grid, load.window_s * per, rate.mean(axis=1),
                load.cv[:T * per].reshape(T, per).max(axis=1), mix, load.attribution)


def show(title: str, outcomes: dict) -> None:
    """Print one comparison."""
    print(f"\n{title}")
    print(f"{'strategy':10} {'$ as run':>10} {'GPU-h':>8} {'changes':>8} {'attain':>8} {'worst win':>10} {'failed':>8}  planning")
    for o in outcomes.values():
        r = o.row()
        worst = "-" if r["worst_window_attainment"] is None else f"{r['worst_window_attainment']:.2%}"
        print(f"{r['strategy']:10} {r['cost']:>10.2f} {r['gpu_hours']:>8.1f} {r['changes']:>8} {r['attainment']:>8.2%} "
              f"{worst:>10} {r['windows_failed']:>4}/{r['windows_judged']:<3}  {r['status']}", flush=True)


def main() -> None:
    """Run the four parts; print them and one JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", type=float, default=0.1, help="ServeGen rate factor for the comparison")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--quick", action="store_true", help="12 windows instead of a day (a smoke run)")
    ap.add_argument("--save", help="also write the figures and the strategies' rows here (JSON), for the README")
    args = ap.parse_args()
    pool = make_executor("local", workers=args.workers)
    parts = args.workers
    out: dict = {}

    # 1. ServeGen day, four strategies.
    sc = load_scenario("melange/scenarios/servegen-day.yaml")
    job = resolve(sc, scale=args.scale, count=12 if args.quick else None)
    start = time.perf_counter()
    sg = compare(sc, job.load, job.first, job.count, job.period, job.options, seed=0, history=job.history,
                 rounds=args.rounds, parts=parts, executor=pool, on_event=lambda m: print("  " + m, flush=True))
    show(f"ServeGen m-large, windows {job.first}-{job.first + job.count - 1} at x{args.scale:g} "
         f"(mean {job.span.mean_rate:.1f}, peak {job.span.peak_rate:.1f} req/s), history {job.history} days "
         f"[{time.perf_counter() - start:.0f} s]", sg)
    for name, o in sg.items():
        out[f"{name}_cost"] = round(o.replay.cost, 2)
        out[f"{name}_worst_window_attainment"] = o.replay.worst_attainment
        out[f"{name}_windows_failed"] = int((~o.replay.judged["held"]).sum())
        out[f"{name}_gpu_hours"] = round(o.replay.gpu_hours, 2)
        out[f"{name}_changes"] = o.replay.changes
    out["dayahead_vs_static"] = round(out["dayahead_cost"] / out["static_cost"], 3)
    rows = {"servegen": [o.row() for o in sg.values()]}

    # 2. The Azure hour (previous window as the forecast).
    base = load_scenario()
    base.workload = replace(base.workload, lengths="uniform", trace=None)
    az = resolve(base, load="azure-conv-hour", scale=8.0, first=1, count=11, period=1, history=1)
    azure = compare(base, az.load, az.first, az.count, az.period, az.options, seed=0, history=1, rounds=args.rounds,
                    parts=parts, executor=pool)
    show("Azure conversation hour x8, 5-minute windows, forecast = previous window", azure)
    rows["azure"] = [o.row() for o in azure.values()]
    for name, o in azure.items():
        out[f"azure_{name}_cost"] = round(o.replay.cost, 3)
        out[f"azure_{name}_worst_window_attainment"] = o.replay.worst_attainment

    # 3. Solver speed at the real rate: a day of 10-minute windows, a week of hourly ones.
    real = read_load("servegen-m-large", sc.workload.grid)
    day = real.span(job.first, 144)
    start = time.perf_counter()
    s = solve_schedule(day, sc.gpus, sc.profiles, sc.solve, ScheduleOptions())
    out["solve_s"] = round(time.perf_counter() - start, 2)
    out["solve_gap"], out["solve_status"] = s.gap, f"{s.status} ({s.method})"
    week = hourly(real.span(job.first - 6 * 144, 7 * 144), 6)
    start = time.perf_counter()
    w = solve_schedule(week, sc.gpus, sc.profiles, sc.solve, ScheduleOptions())
    out["week_solve_s"] = round(time.perf_counter() - start, 2)
    out["week_gap"], out["week_status"] = w.gap, f"{w.status} ({w.method})"
    start = time.perf_counter()
    m = solve_schedule(day, sc.gpus, sc.profiles, sc.solve, ScheduleOptions(min_up_windows=3, max_changes_per_hour=6,
                                                                            time_limit_s=60))
    out["day_min_up_solve_s"] = round(time.perf_counter() - start, 2)
    out["day_min_up_gap"], out["day_min_up_status"] = m.gap, f"{m.status} ({m.method})"
    print(f"\nsolver: a day of 144 windows at the real rate {out['solve_s']} s ({out['solve_status']}, gap "
          f"{s.gap:.3%}); a week of 168 hourly windows {out['week_solve_s']} s ({out['week_status']}, gap {w.gap:.3%}); "
          f"the day with min up-time 3 windows and <= 6 changes an hour (whole MILP) {out['day_min_up_solve_s']} s "
          f"({out['day_min_up_status']}, gap {m.gap or 0:.3%})", flush=True)

    # 4. A day at its real rate, in parts; split against single on a shorter span.
    if not args.quick:
        fleet = fleet_of_schedule(s)
        start = time.perf_counter()
        run = replay(sc, day, fleet, 1000, parts=8, executor=pool)
        out["replay_s"] = round(time.perf_counter() - start, 1)
        out["replay_requests"] = run.requests
        out["replay_attainment"] = round(run.attainment, 5)
        print(f"\nreal-rate day: {run.requests:,} requests replayed in {out['replay_s']} s on {args.workers} processes "
              f"(8 parts); attainment {run.attainment:.2%}, {int((~run.judged['held']).sum())} windows failed", flush=True)
    short = real.span(job.first, 12)
    sfleet = fleet_of_schedule(solve_schedule(short, sc.gpus, sc.profiles, sc.solve))
    start = time.perf_counter()
    whole = replay(sc, short, sfleet, 7, parts=1)
    single_s = time.perf_counter() - start
    start = time.perf_counter()
    split = replay(sc, short, sfleet, 7, parts=4, executor=pool)
    split_s = time.perf_counter() - start
    out["split_agreement"] = agreement(whole.windows, split.windows)
    out["split_max_abs_diff"] = float(np.max(np.abs(whole.windows["attainment"] - split.windows["attainment"])))
    out["single_s"], out["split_s"] = round(single_s, 1), round(split_s, 1)
    print(f"split replay (4 parts) against one process, 12 windows at the real rate ({whole.requests:,} requests): "
          f"{out['split_agreement']:.0%} of windows inside each other's interval, largest difference "
          f"{out['split_max_abs_diff']:.4f}; {single_s:.0f} s single, {split_s:.0f} s split", flush=True)
    if args.save:
        from melange.files import atomic_write_text

        atomic_write_text(args.save, json.dumps({"summary": out, "rows": rows, "scale": args.scale,
                                                  "rounds": args.rounds}, indent=1))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
