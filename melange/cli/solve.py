"""`melange solve`: the cheapest GPU mix for a scenario (no simulation)."""

from __future__ import annotations

import click

from melange.cli import EXIT_GOAL_MISSED
from melange.cli.options import (
    catalog_option,
    check_output,
    interruptible,
    normalize_option,
    parse_duration,
    parse_fraction,
    parse_slice_factor,
    scenario_argument,
    solver_options,
)
from melange.errors import MelangeError


def options_from_flags(base, slice_factor, headroom, utilization, time_limit, backend):
    """The scenario's SolveOptions with any command-line overrides applied."""
    from dataclasses import replace

    changes = {}
    if slice_factor is not None:
        changes["slice_factor"] = parse_slice_factor(slice_factor)
    if headroom is not None:
        changes["headroom"] = parse_fraction(headroom, "--headroom")
    if utilization is not None:
        changes["utilization"] = parse_fraction(utilization, "--utilization", high=1.0)
        if not changes["utilization"] > 0:
            raise MelangeError("--utilization: must be in (0, 100%]")
        changes["utilization_override"] = True  # the command line beats the scenario's per-type ceilings
    if time_limit is not None:
        changes["time_limit_s"] = parse_duration(time_limit, "--time-limit")
    if backend is not None:
        changes["backend"] = backend
    return replace(base, **changes)


@click.command()
@scenario_argument
@normalize_option
@catalog_option
@solver_options
@click.option("--baselines", is_flag=True, help="Also solve with each GPU type alone.")
@click.option("--force", is_flag=True, help="Accept profile files made for another GPU, model, SLO or grid.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the plan as JSON.")
@click.option("--format", "fmt", type=click.Choice(["plan", "seed"]), default="plan", show_default=True,
              help="JSON shape: our full plan, or the seed code's {gpu: count, cost}.")
def solve(scenario, normalize, extra, slice_factor, headroom, utilization, time_limit, backend, baselines,
          force, output, fmt):
    """Solve SCENARIO (YAML/JSON; default: the built-in scenario) for the cheapest GPU mix."""
    from melange.optimizer import baselines as single_type_plans
    from melange.optimizer import solve as solve_plan
    from melange.report import (
        baselines_table,
        console,
        not_optimal_line,
        plan_table,
        seed_result,
        shares_table,
        write_json,
    )
    from melange.scenario import load_scenario

    check_output(output)
    sc = load_scenario(scenario, normalize=normalize, catalog=extra, force=force)
    options = options_from_flags(sc.solve, slice_factor, headroom, utilization, time_limit, backend)
    plan = interruptible(solve_plan, sc.workload, sc.gpus, sc.profiles, options)
    out = console()
    out.print(plan_table(plan, sc.gpus, title=f"Plan for {sc.name} at {sc.workload.rate:g} req/s"))
    out.print(shares_table(plan, sc.workload.grid, sc.workload.bucket_rates() * (1 + options.headroom)))
    singles = interruptible(single_type_plans, sc.workload, sc.gpus, sc.profiles, options) if baselines else None
    if singles is not None:
        out.print(baselines_table(plan, singles))
    if output:
        data = seed_result(plan) if fmt == "seed" else plan.to_dict()
        if fmt == "plan" and singles is not None:
            data["baselines"] = {g: (p.cost if p else None) for g, p in singles.items()}
        write_json(output, data)
        out.print(f"wrote {output}")
    if plan.status != "optimal":
        out.print(not_optimal_line(plan))
        raise click.exceptions.Exit(EXIT_GOAL_MISSED)
