"""`melange schedule`: a fleet per window for load that changes over time, proven by replaying it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from melange.cli.options import SEED, catalog_option, check_output, interruptible, scenario_argument

if TYPE_CHECKING:
    from rich.table import Table


def parse_windows(text: str | None) -> tuple[int | None, int | None]:
    """'A:B' -> (A, B - A) windows A..B-1; 'A:' -> (A, None)."""
    from melange.core import MelangeError

    if text is None:
        return None, None
    first, _, last = text.partition(":")
    try:
        a = int(first) if first else 0
        b = int(last) if last else None
    except ValueError:
        raise MelangeError(f"--windows: '{text}' is not A:B (window numbers)") from None
    if a < 0 or (b is not None and b <= a):
        raise MelangeError(f"--windows: '{text}' must be A:B with 0 <= A < B")
    return a, None if b is None else b - a


def outcomes_table(rows: list[dict], target: float) -> Table:
    """The strategies side by side on the same replay."""
    from rich.table import Table

    table = Table(title=f"Strategies on the same replay (fresh seed; target attainment {target:.1%} per window)")
    for col in ("strategy", "$ as run", "GPU-hours", "changes", "attainment", "worst window", "windows failed", "planning"):
        table.add_column(col, justify="left" if col in ("strategy", "planning") else "right")
    for r in rows:
        worst = "-" if r["worst_window_attainment"] is None else f"{r['worst_window_attainment']:.2%}"
        table.add_row(r["strategy"], f"{r['cost']:.2f}", f"{r['gpu_hours']:.1f}", str(r["changes"]),
                      f"{r['attainment']:.2%}", worst, f"{r['windows_failed']} of {r['windows_judged']}", r["status"])
    return table


@click.command()
@scenario_argument
@click.option("--load", "load_name", help="Load over time: a built-in name (melange scenarios loads) or a load file.")
@click.option("--scale", type=float, help="Multiply every window's rate (bursts in proportion).")
@click.option("--windows", help="Windows A:B of the load to plan (default: the scenario's).")
@click.option("--history", type=click.IntRange(min=1), help="Periods a day-ahead forecast looks back (--compare).")
@click.option("--period", type=click.IntRange(min=1), help="Windows in a forecast's period (default: a day's).")
@click.option("--min-up", type=click.IntRange(min=1), help="An instance serves at least this many windows.")
@click.option("--max-changes-per-hour", type=click.IntRange(min=0), help="Instance starts + stops per clock hour.")
@click.option("--prove", "prove_s", type=click.FloatRange(min=0), default=0.0,
              help="Seconds on the whole-horizon MILP to prove a decomposed schedule (or narrow its gap).")
@click.option("--rounds", type=click.IntRange(min=1), default=6, show_default=True,
              help="Solve-replay-tighten rounds at most.")
@click.option("--compare", is_flag=True, help="Also run static, reactive, day-ahead and oracle side by side.")
@click.option("--parts", type=click.IntRange(min=1), default=None, help="Replay in this many parts (default: workers).")
@click.option("--workers", type=click.IntRange(min=1), default=None, help="Processes (default: all cores).")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="Where the replay's parts run: a local process pool, or Ray (pip install 'melange[ray]').")
@click.option("--address", help="Ray cluster to join (auto, HOST:PORT or ray://HOST:PORT); default: a local Ray.")
@click.option("--seed", type=SEED, help="Tuning seed (default: the scenario's); the proof uses seed + 1000.")
@click.option("-o", "--output", default="schedule-out", show_default=True, type=click.Path(file_okay=False),
              help="Directory for schedule.json/.csv/.png (and the replay's parts, to resume from).")
@catalog_option
def schedule(scenario, load_name, scale, windows, history, period, min_up, max_changes_per_hour, prove_s, rounds,
             compare, parts, workers, executor, address, seed, output, extra) -> None:
    """Plan a fleet per window of a load that changes over time (SCENARIO's `schedule:` section, or
    --load), hold it in replay (tightening windows that fail), then prove it on a fresh seed.
    Exit 1 when the schedule does not hold in every window on the fresh seed."""
    from pathlib import Path

    from melange.report import console
    from melange.scenario import load_scenario
    from melange.schedule import resolve
    from melange.schedule.compare import FRESH, chosen
    from melange.schedule.loop import plan_schedule
    from melange.schedule.outputs import write_outputs
    from melange.schedule.replay import fleet_of_schedule, replay
    from melange.schedule.strategies import gpus_per_instance
    import os

    from melange.study.executor import make_executor

    check_output(output, "-o", is_dir=True)
    pool = make_executor(executor, workers=workers, address=address)
    first, count = parse_windows(windows)
    sc = load_scenario(scenario, catalog=tuple(extra))
    job = resolve(sc, load=load_name, scale=scale, first=first, count=count, history=history, period=period,
                  min_up=min_up, max_changes=max_changes_per_hour, prove_s=prove_s)
    if compare:  # the forecast's history must be in the load: refuse before any work
        from melange.schedule.compare import forecast

        forecast(job.load, job.first, job.count, job.period, job.history)
    out = console()
    parts = parts or workers or os.cpu_count() or 1
    seed = sc.simulation.seed if seed is None else seed
    cache = Path(output) / "parts"
    span = job.span
    out.print(f"[bold]{sc.name}[/]: {span.name}, {span.windows} windows of {span.window_s:g} s, "
              f"mean {span.mean_rate:.1f} req/s, peak {span.peak_rate:.1f} req/s; replay in {parts} parts")

    def on_round(r) -> None:
        s, run = r.schedule, r.replay
        out.print(f"round {r.index}: ${s.cost:,.2f} planned ({s.status}, {s.method}, gap {s.gap or 0:.2%}, "
                  f"{s.solve_time_s:.1f} s); replay on seed {r.seed}: {'held' if run.held else 'did not hold'} "
                  f"({len(run.judged) - int(run.judged['held'].sum())} windows failed), {run.requests:,} requests "
                  f"in {run.wall_s:.0f} s" + (f"; loosening windows {r.loosened[:8]}" if r.loosened else ""))

    def on_part(part) -> None:
        w = part.windows
        out.print(f"  windows {int(w['window'].min())}-{int(w['window'].max())} replayed: {part.requests:,} requests "
                  f"in {part.wall_s:.0f} s, {int((~w['held']).sum())} failed", highlight=False)

    report = interruptible(plan_schedule, sc, span, job.options, seed=seed, rounds=rounds, parts=parts,
                           executor=pool, on_round=on_round, on_part=on_part if parts > 1 else None)
    s = chosen(report)
    proof = interruptible(replay, sc, span, fleet_of_schedule(s, gpus_per_instance(sc)), seed + FRESH, parts=parts,
                          executor=pool, cache=cache, on_part=on_part if parts > 1 else None)
    verdict = "held in every window" if proof.held else f"[red]failed {int((~proof.judged['held']).sum())} windows[/]"
    out.print(f"schedule: ${s.cost:,.2f} planned, ${proof.cost:,.2f} as run, {proof.gpu_hours:,.1f} GPU-hours, "
              f"{proof.changes} changes; on fresh seed {seed + FRESH}: {verdict}, worst window "
              f"{(proof.worst_attainment or 0):.2%}, overall {proof.attainment:.2%}")
    paths = write_outputs(output, s, span, proof, scenario=sc.name, tuning_seed=seed, proof_seed=seed + FRESH,
                          rounds=[{"index": r.index, "cost": r.schedule.cost, "held": r.replay.held,
                                   "tightened": r.tightened} for r in report.rounds])
    if compare:
        from melange.schedule.compare import compare as run_compare
        from melange.schedule.outputs import write_comparison

        outcomes = interruptible(run_compare, sc, job.load, job.first, job.count, job.period, job.options, seed=seed,
                                 history=job.history, rounds=rounds, parts=parts, executor=pool,
                                 on_event=out.print)
        rows = [o.row() for o in outcomes.values()]
        out.print(outcomes_table(rows, sc.slo.attainment))
        paths.append(write_comparison(output, rows, scenario=sc.name, first_window=job.first, windows=job.count,
                                      period=job.period, history=job.history))
    out.print(f"wrote {', '.join(str(p) for p in paths)}")
    if not proof.held:
        raise click.exceptions.Exit(1)
