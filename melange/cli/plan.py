"""`melange plan`: solve, prove the plan in simulation on fresh traffic, tighten and re-solve."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from melange.cli.options import (
    SEED,
    catalog_option,
    check_output,
    interruptible,
    normalize_option,
    parse_duration,
    scenario_argument,
    solver_options,
)
from melange.cli.solve import options_from_flags

if TYPE_CHECKING:  # heavy modules are imported where used (fast start-up)
    from rich.console import Console
    from rich.table import Table

    from melange.core import Slo
    from melange.scenario import Scenario
    from melange.validate import BaselineResult, PlanReport, Round
    from melange.validate.store import RunDir


def pct(x: float | None) -> str:
    """0.99876 -> '99.88%'."""
    return "-" if x is None else f"{x:.2%}"


def rounds_table(rounds: list[Round], target: float | None) -> Table:
    """One row per round: cost, counts, tuning-seed attainment, confirmation, why it failed."""
    from rich.table import Table

    from melange.report import counts_text

    goal = "no SLO" if target is None else f"target attainment {target:.1%}"
    table = Table(title=f"Validation rounds ({goal})")
    for col in ("round", "$/h", "instances", "tuning run", "fresh seeds", "held", "tightened", "why not"):
        table.add_column(col, justify="left" if col in ("instances", "why not") else "right")
    for r in rounds:
        counts = counts_text(r.plan.counts)
        att = "not simulated" if r.attainment is None else pct(r.attainment)
        conf = "-" if r.confirmation is None else f"{pct(r.confirmation.attainment)} ({len(r.confirmation.seeds)} runs)"
        table.add_row(str(r.index), f"{r.plan.cost:.3f}", counts, att, conf, "yes" if r.held else "no",
                      str(len(r.tightened)), r.why_not())
    return table


def baselines_table(report: PlanReport, singles: dict[str, BaselineResult]) -> Table:
    """Validated single-type baselines beside the Mélange plan, with what the plan saves."""
    from rich.table import Table

    table = Table(title="Validated single-type baselines (fewest instances that hold; one fewer fails)")
    for col in ("plan", "count", "solver's count", "$/h", "attainment", "plan saves"):
        table.add_column(col, justify="left" if col == "plan" else "right")
    best = report.best
    if best is not None:
        label = "Mélange plan" if report.mix is None else f"answer ({report.choice} only)"
        table.add_row(label, str(sum(best.counts.values())), "", f"{best.cost:.3f}",
                      pct(report.validation.attainment), "")
    for name, b in singles.items():
        if b.count is None:
            table.add_row(f"{name} only", "-", str(b.solver_count or "-"), "-", b.reason, "")
            continue
        saves = "" if best is None else f"{1 - best.cost / b.cost:.1%}"
        table.add_row(f"{name} only", str(b.count), str(b.solver_count), f"{b.cost:.3f}",
                      pct(b.confirmation.attainment), saves)
    return table


def describe_slo(slo: Slo | None) -> str:
    """'TPOT ≤ 100 ms (decode), TTFT ≤ 3000 ms, 99% of requests' or 'no SLO'."""
    if slo is None:
        return "no SLO"
    if not slo.per_request:
        ttft = f", mean TTFT ≤ {slo.ttft_ms:g} ms" if slo.ttft_ms is not None else ""
        return (f"mean ITL ≤ {slo.tpot_ms:g} ms over all requests (the paper's rule){ttft}, "
                f"{slo.attainment:.0%} of requests completed")
    parts = [] if slo.tpot_ms is None else [f"TPOT ≤ {slo.tpot_ms:g} ms ({slo.definition})"]
    parts += [] if slo.ttft_ms is None else [f"TTFT ≤ {slo.ttft_ms:g} ms"]
    parts += [] if slo.e2e_ms is None else [f"e2e ≤ {slo.e2e_ms / 1000:g} s"]
    return f"{', '.join(parts)}, {slo.attainment:.0%} of requests"


def capacity_table(cal) -> Table:
    """Each calibration round: per GPU type in use, the solver's count, the fleet's fewest, the factor."""
    from rich.table import Table

    table = Table(title="Capacity: solver's count vs the fewest instances that hold each type's share "
                        "(within = 15 % or one instance)")
    for col in ("round", "$/h", "type", "share req/s", "solver", "fleet", "error", "factor"):
        table.add_column(col, justify="left" if col == "type" else "right")
    for k, r in enumerate(cal.rounds, 1):
        for f in r["fits"]:
            table.add_row(str(k), f"{r['cost']:.3f}", f["gpu"], f"{f['rate']:.3g}", str(f["solver_count"]),
                          "-" if f["fewest"] is None else str(f["fewest"]),
                          "-" if f["error"] is None else f"{f['error']:.2f}", f"{r['factors'].get(f['gpu'], 1.0):.3g}")
    return table


def print_verdict(out: Console, sc: Scenario, report: PlanReport, max_rounds: int) -> None:
    """The plan, its split, and whether (and on how much fresh traffic) it held."""
    from melange.report import plan_table, shares_table
    from melange.validate import BUCKET_MIN_REQUESTS, why_not_validated

    final = report.best or report.rounds[-1].plan
    out.print(plan_table(final, sc.gpus, title="Plan" if report.best else "Last plan (did NOT hold)"))
    out.print(shares_table(final, sc.workload.grid, sc.workload.bucket_rates() * (1 + sc.solve.headroom)))
    reason = why_not_validated(sc)
    v = report.validation
    if reason:
        out.print(f"[yellow]not validated: {reason}[/]")
    elif v is None:
        why = (f"- {report.stopped}" if report.stopped else f"within {max_rounds} rounds" if len(report.rounds) >= max_rounds else
               "- no cell had enough requests to blame for the last round's misses (raise --requests)")
        out.print(f"[red]no plan held the SLO on fresh traffic {why}[/]")
    else:
        if report.choice not in (None, "mix") and report.mix is not None:
            out.print(f"[bold]the answer is one GPU type[/]: {report.best.counts[report.choice]} × {report.choice} "
                      f"held for less than the held mix (${report.mix.cost:.3f}/h)")
        lo, hi = v.interval
        out.print(f"[green]held on fresh traffic[/]: attainment {pct(v.attainment)} (95% CI {pct(lo)}–{pct(hi)}) "
                  f"over {v.counted:,} counted requests on seeds {', '.join(map(str, v.seeds))}, never tuned "
                  f"on; target {report.target:.2%}; stable; every bucket with ≥ {BUCKET_MIN_REQUESTS} requests "
                  "has the target within its 95% interval")


@click.command()
@scenario_argument
@normalize_option
@catalog_option
@solver_options
@click.option("--rounds", "max_rounds", type=click.IntRange(1, 50), default=5, show_default=True,
              help="Most solve-simulate rounds.")
@click.option("--requests", type=click.IntRange(min=1),
              help="Counted requests per run (the warm-up's arrivals come on top).")
@click.option("--duration", help="Counted traffic per run, e.g. 10m (instead of --requests).")
@click.option("--seed", type=SEED, help="Tuning seed (default: the scenario's); fresh seeds follow it.")
@click.option("--confirm", "confirm_runs", type=click.IntRange(1, 20), default=2, show_default=True,
              help="Confirmation runs on fresh seeds a plan must pass to hold.")
@click.option("--baselines", is_flag=True, help="Kept for scripts: every GPU type's fewest instances that hold are "
              "always found, since the answer is the cheapest plan that held, a single type included.")
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True,
              help="Processes for the confirmation runs (same results, less wall time).")
@click.option("--force", is_flag=True, help="Accept profile files made for another GPU, model, SLO or grid.")
@click.option("--prices", help="Cloud prices instead of the scenario's: aws, lambda (dated SkyPilot catalog "
              "snapshots) or a CSV in that format; GPUs the cloud does not sell are left out.")
@click.option("--fresh", is_flag=True, help="Discard a previous run of other inputs in the -o directory.")
@click.option("-o", "--output", type=click.Path(file_okay=False),
              help="Directory for plan.json and rounds.jsonl; a re-run resumes from it.")
@click.option("--plot", "plot_dir", type=click.Path(file_okay=False),
              help="Directory for plots: bucket map, TPOT/TTFT vs the SLO, attainment per bucket.")
@click.option("--sensitivity", is_flag=True,
              help="Re-validate the answer with step times at both ends of the step model's uncertainty "
                   "band (catalog/calibration.yaml): does it still hold, which buckets fail.")
@click.pass_context
def plan(ctx, scenario, normalize, extra, slice_factor, headroom, utilization, time_limit, backend, max_rounds,
         requests, duration, seed, confirm_runs, baselines, workers, force, prices, fresh, output, plot_dir, sensitivity):
    """Cheapest GPU mix for SCENARIO (default: built-in) that holds its SLO on fresh simulated traffic."""
    from melange.cli import EXIT_GOAL_MISSED
    from melange.report import console
    from melange.scenario import load_scenario
    from melange.validate import plan_cheapest, plan_document, run_settings, why_not_validated
    from melange.validate.store import RunDir, inputs_hash

    check_output(output, "-o", is_dir=True)
    check_output(plot_dir, "--plot", is_dir=True)
    sc = load_scenario(scenario, normalize=normalize, catalog=extra, force=force)
    price_notes = []
    if prices:
        from melange.prices import apply_prices, read_prices

        price_notes = apply_prices(sc, read_prices(prices), prices)
    sc.solve = options_from_flags(sc.solve, slice_factor, headroom, utilization, time_limit, backend)
    opts = {"requests": requests, "duration_s": parse_duration(duration, "--duration") if duration else None,
            "seed": seed,
            "confirm_runs": confirm_runs}
    store = RunDir(output, inputs_hash(sc, **opts)) if output else None  # fails fast when unwritable
    settings = None if why_not_validated(sc) else run_settings(sc, requests=requests, duration_s=opts["duration_s"])
    done, checks = store.open(fresh) if store else ([], {})
    out = console()
    for note in price_notes:
        out.print(f"price: {note}")
    print_header(out, sc, settings, store, done, checks)
    with out.status("solving and simulating…") as status:
        report = interruptible(plan_cheapest, sc, max_rounds=max_rounds, resume=done, known=checks,
                               progress=status.update, workers=workers, on_round=lambda r: on_round(out, store, r),
                               on_check=store.log_check if store else None, **opts)
    singles = report.singles
    print_results(out, sc, report, singles, max_rounds)
    document = plan_document(report, singles)
    if sensitivity and settings is not None and report.best is not None:
        from melange.validate.sensitivity import plan_sensitivity

        # Seeds past every step's: the loop tunes on seed, confirms on the next, holds out after.
        first = (sc.simulation.seed if seed is None else seed) + 1000
        with out.status("sensitivity…") as status:
            ends = interruptible(plan_sensitivity, sc, report.best, list(range(first, first + confirm_runs)),
                                 settings, workers=workers, progress=status.update)
        out.print(sensitivity_table(ends))
        if not all(e.held for e in ends):
            out.print("[yellow]knife-edge: the answer does not hold at the slow end of the step model's band; "
                      "measure the GPUs (melange profile --url) or add headroom (--headroom)[/]")
        document["sensitivity"] = [e.to_dict() for e in ends]
    if store:
        out.print(f"wrote {store.write_plan(document)} and {output}/rounds.jsonl")
    if plot_dir:
        from melange.study.figures import plan_figures

        simulated = settings is not None  # one fresh run past the confirmation seeds for the latency plots
        fresh_seed = (sc.simulation.seed if seed is None else seed) + confirm_runs + 1
        paths = plan_figures(sc if simulated else _no_slo(sc), report.best or report.rounds[-1].plan, plot_dir,
                             seed=fresh_seed, requests=requests)
        out.print(f"wrote {len(paths)} plots to {plot_dir}")
    if settings is not None and not report.held:
        ctx.exit(EXIT_GOAL_MISSED)


def _no_slo(sc: Scenario) -> Scenario:
    """A copy that asks for no latency plots (the plan could not be simulated)."""
    from copy import copy

    bare = copy(sc)
    bare.slo = None
    return bare


def sensitivity_table(ends) -> Table:
    """The answer at both ends of the step model's band: held or not, and why."""
    from rich.table import Table

    table = Table(title="Sensitivity: the answer with every step time at the ends of its model's band")
    for col in ("end", "step-time factor", "held", "attainment", "why not"):
        table.add_column(col, justify="left" if col in ("end", "step-time factor", "why not") else "right")
    for e in ends:
        factors = ", ".join(f"{g} ×{f:g}" for g, f in e.scales.items()) or "no band (measured models)"
        table.add_row(e.end, factors, "yes" if e.held else "[red]no[/]", pct(e.attainment),
                      "; ".join(e.reasons[:3]))
    return table


def print_header(out: Console, sc: Scenario, settings, store: RunDir | None, done: list, checks: dict) -> None:
    """What is about to run: the scenario, the traffic per run, what resumes."""
    out.print(f"[bold]{sc.name}[/]: {sc.workload.rate:g} req/s, {describe_slo(sc.slo)}, {len(sc.gpus)} GPU types")
    if settings is not None:
        size = f"{settings.requests:,} requests" if settings.requests else f"{settings.duration_s:g} s of traffic"
        out.print(f"each run: a {settings.warmup_s:g} s warm-up, then {size} counted")
    if done or checks:
        out.print(f"resuming from {store.path}: {len(done)} finished rounds and {len(checks)} baseline checks "
                  "of the same inputs")


def on_round(out: Console, store: RunDir | None, r: Round) -> None:
    """Print a finished round and log it durably (an interrupted run keeps it)."""
    att = "not simulated" if r.attainment is None else f"tuning run {pct(r.attainment)}"
    conf = "" if r.confirmation is None else f", fresh seeds {pct(r.confirmation.attainment)}"
    out.print(f"round {r.index}: ${r.plan.cost:.3f}/h, {att}{conf}, {'held' if r.held else 'did not hold'}, "
              f"tightened {len(r.tightened)} cells")
    if store:
        store.log_round(r)


def print_results(out: Console, sc: Scenario, report: PlanReport, singles, max_rounds: int) -> None:
    """Rounds, the plan, the verdict, and the baselines with the saving."""
    from melange.validate import saving

    if report.calibration is not None and report.calibration.rounds:
        out.print(capacity_table(report.calibration))
    out.print(rounds_table(report.rounds, report.target))
    print_verdict(out, sc, report, max_rounds)
    if singles is not None:
        out.print(baselines_table(report, singles))
        s = saving(report.best, singles)
        if s is not None:
            out.print(f"saving against the cheapest validated baseline ({s['against']}, ${s['baseline_cost']:.3f}/h): "
                      f"{s['fraction']:.1%}")
            if s["fraction"] < 0:  # both held: the cheaper validated fleet is the answer
                out.print(f"[yellow]{s['against']} alone held for less than the mix: buy {s['against']} only "
                          f"(the mix's profiles are conservative for mixed traffic)[/]")
