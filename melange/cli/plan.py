"""`melange plan`: solve, prove the plan in simulation, tighten and re-solve until it holds."""

from __future__ import annotations

import json
from pathlib import Path
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
    from rich.table import Table

    from melange.core import Slo
    from melange.validate import Round


def rounds_table(rounds: list[Round], target: float | None) -> Table:
    """One row per round: cost, counts, attainment against the target, what was tightened."""
    from rich.table import Table

    goal = "no SLO" if target is None else f"target attainment {target:.1%}"
    table = Table(title=f"Validation rounds ({goal})")
    for col in ("round", "$/h", "instances", "attainment", "held", "tightened cells"):
        table.add_column(col, justify="right" if col != "instances" else "left")
    for r in rounds:
        counts = ", ".join(f"{n}×{g}" for g, n in r.plan.counts.items() if n)
        att = "not simulated" if r.attainment is None else f"{r.attainment:.2%}"
        table.add_row(str(r.index), f"{r.plan.cost:.3f}", counts, att, "yes" if r.held else "no",
                      str(len(r.tightened)))
    return table


def describe_slo(slo: Slo | None) -> str:
    """'TPOT ≤ 100 ms (decode), TTFT ≤ 3000 ms, 99% of requests' or 'no SLO'."""
    if slo is None:
        return "no SLO"
    ttft = f", TTFT ≤ {slo.ttft_ms:g} ms" if slo.ttft_ms is not None else ""
    return f"TPOT ≤ {slo.tpot_ms:g} ms ({slo.definition}){ttft}, {slo.attainment:.0%} of requests"


@click.command()
@scenario_argument
@normalize_option
@catalog_option
@solver_options
@click.option("--rounds", "max_rounds", type=click.IntRange(1, 50), default=5, show_default=True,
              help="Most solve-simulate rounds.")
@click.option("--requests", type=click.IntRange(min=1), help="Simulated requests per round.")
@click.option("--duration", help="Simulated traffic per round, e.g. 10m (instead of --requests).")
@click.option("--seed", type=SEED, help="Simulation seed (default: the scenario's).")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Directory for plan.json and rounds.jsonl.")
def plan(scenario, normalize, extra, slice_factor, headroom, utilization, time_limit, backend, max_rounds,
         requests, duration, seed, output):
    """Cheapest GPU mix for SCENARIO (default: built-in) that holds its SLO in simulation."""
    from melange.cli import EXIT_GOAL_MISSED
    from melange.report import console, plan_table, shares_table, write_json
    from melange.scenario import load_scenario
    from melange.validate import plan_and_validate, why_not_validated

    check_output(output, "-o", is_dir=True)
    sc = load_scenario(scenario, normalize=normalize, catalog=extra)
    sc.solve = options_from_flags(sc.solve, slice_factor, headroom, utilization, time_limit, backend)
    duration_s = parse_duration(duration, "--duration") if duration else None
    out = console()
    out.print(f"[bold]{sc.name}[/]: {sc.workload.rate:g} req/s, {describe_slo(sc.slo)}, {len(sc.gpus)} GPU types")
    log = None
    if output:
        Path(output).mkdir(parents=True, exist_ok=True)
        log = (Path(output) / "rounds.jsonl").open("w")

    def on_round(r: Round) -> None:
        att = "not simulated" if r.attainment is None else f"attainment {r.attainment:.2%}"
        out.print(f"round {r.index}: ${r.plan.cost:.3f}/h, {att}, tightened {len(r.tightened)} cells")
        if log:  # written as each round ends, so an interrupted run keeps what it finished
            log.write(json.dumps({"round": r.index, "plan": r.plan.to_dict(), "attainment": r.attainment,
                                  "held": r.held, "tightened": r.tightened}) + "\n")
            log.flush()

    with out.status("solving and simulating…"):
        report = interruptible(plan_and_validate, sc, max_rounds=max_rounds, requests=requests, duration_s=duration_s,
                                   seed=seed, on_round=on_round)
    if log:
        log.close()
    out.print(rounds_table(report.rounds, report.target))
    final = report.best or report.rounds[-1].plan
    out.print(plan_table(final, sc.gpus, title="Plan" if report.best else "Last plan (did NOT hold)"))
    out.print(shares_table(final, sc.workload.grid, sc.workload.bucket_rates() * (1 + sc.solve.headroom)))
    reason = why_not_validated(sc)
    if reason:
        out.print(f"[yellow]not validated: {reason}[/]")
    elif report.best is None:
        out.print(f"[red]no plan held the SLO within {max_rounds} rounds[/]")
    if output:
        write_json(Path(output) / "plan.json", report.to_dict())
        out.print(f"wrote {output}/plan.json and rounds.jsonl")
    if report.best is None and not reason:
        raise click.exceptions.Exit(EXIT_GOAL_MISSED)
