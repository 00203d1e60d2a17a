"""`melange simulate`: replay a scenario's traffic through a plan's GPU fleet (SimPy)."""

from __future__ import annotations

import math

from pathlib import Path
from typing import TYPE_CHECKING

import click

from melange.cli.options import SEED, catalog_option, check_output, parse_duration, scenario_argument
from melange.errors import MelangeError

if TYPE_CHECKING:  # heavy modules are imported where used (fast start-up)
    from rich.table import Table

    from melange.core import Plan

DEFAULT_REQUESTS = 10_000
ROUTER_NAMES = ["least_work", "round_robin", "random"]  # melange.sim.router.ROUTERS (checked there)


def load_plan(path: str | Path) -> Plan:
    """A plan JSON as written by `melange solve -o` or `melange plan -o` (Plan.to_dict at the top
    level; `validation` and `baselines` beside it are ignored here)."""
    from melange.core import Plan
    from melange.scenario import read_document

    path = Path(path)
    data = read_document(path)
    if "counts" not in data and isinstance(data.get("best"), dict):
        data = data["best"]  # plan.json of melange plan before it became a plan itself
    try:
        return Plan.from_dict(data)
    except MelangeError as exc:
        raise MelangeError(f"{path.name}: {exc}") from None
    except KeyError as exc:
        raise MelangeError(f"{path.name}: missing key {exc.args[0]!r} (expected a plan from melange solve -o)") from None
    except (TypeError, ValueError, AttributeError):
        raise MelangeError(f"{path.name}: not a plan (counts, share, cost)") from None


def summary_table(summary: dict, title: str) -> Table:
    """Headline numbers of a run: counts, attainment, latency percentiles, fleet use."""
    from rich.table import Table

    def ms(x):
        return "-" if x is None else f"{x * 1e3:.1f}"

    table = Table(title=title)
    table.add_column("metric")
    for col in ("mean", "p50", "p90", "p99"):
        table.add_column(col, justify="right")
    for key, label in (("queue_s", "queueing (ms)"), ("ttft_s", "TTFT (ms)"),
                       ("tpot_mean_s", "TPOT e2e/out (ms)"), ("tpot_decode_s", "TPOT decode (ms)"),
                       ("e2e_s", "e2e (ms)")):
        s = summary["latency_s"][key]
        table.add_row(label, *(ms(s[c]) for c in ("mean", "p50", "p90", "p99")))
    slo = summary["slo"]
    overall = summary["attainment"]["overall"]
    mark = "[green]ok[/]" if summary["slo_ok"] else "[red]MISSED[/]"
    table.add_section()
    table.add_row("SLO attainment", f"{overall:.4f}" if overall is not None else "-",
                  f"target {slo['attainment']:g}", mark, "")
    for gpu, value in summary["attainment"]["per_gpu"].items():
        util = [i["utilisation"] for i in summary["instances"] if i["gpu"] == gpu]
        table.add_row(f"  {gpu} ({len(util)} inst.)", f"{value:.4f}",
                      f"busy {sum(util) / len(util):.0%}", "", "")
    table.add_section()
    table.add_row("requests", str(summary["n_requests"]), f"done {summary['completed']}",
                  f"failed {summary['failed']}", f"in flight {summary['in_flight_at_end']}")
    table.add_row("preemptions", str(summary["preemptions"]), "", "", "")
    table.add_row("time (s)", f"sim {summary['sim_time_s']:.0f}", f"wall {summary['wall_time_s']:.2f}", "", "")
    return table


@click.command()
@scenario_argument
@click.option("--plan", "plan_path", required=True, metavar="PLAN.json",
              help="Plan to simulate, as written by `melange solve -o` or `melange plan -o`.")
@click.option("--duration", help="Count arrivals for this long after the warm-up: 1h, 30m or 90s.")
@click.option("--requests", type=click.IntRange(min=1),
              help="Count this many requests; the warm-up's arrivals are simulated on top (as in plan).")
@click.option("--seed", type=SEED, help="Random seed (default: the scenario's, else 0).")
@click.option("--router", type=click.Choice(ROUTER_NAMES), help="Instance choice within a GPU type.")
@click.option("--warmup", help="Leave requests arriving before this out of the aggregates (e.g. 5m).")
@click.option("--exact", is_flag=True, help="Step-by-step engine (slow; the fast path's reference).")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Write records and summary.json here.")
@click.option("--records-format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
@catalog_option
def simulate(scenario, plan_path, duration, requests, seed, router, warmup, exact, output, records_format, extra):
    """Simulate SCENARIO's traffic (default: the built-in scenario) served by the fleet in PLAN.json;
    print and save the results. Exit code 1 when the SLO was missed or no request was counted."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from melange.cli import EXIT_GOAL_MISSED
    from melange.report import console
    from melange.scenario import load_scenario
    from melange.sim import check_plan
    from melange.sim import simulate as run_simulation

    check_output(output, "-o", is_dir=True)
    sc = load_scenario(scenario, catalog=extra, force=True)  # profiles play no part in a simulation
    plan = load_plan(plan_path)
    if sc.slo is None:
        raise MelangeError(f"{sc.source.name if sc.source else 'scenario'}: slo: required to simulate")
    check_plan(plan, sc.workload, [g.name for g in sc.gpus], sc.step_models)
    sim = sc.simulation
    duration_s = parse_duration(duration, "--duration") if duration else (None if requests else sim.duration_s)
    requests = requests or (None if duration else sim.requests)
    if requests is None and duration_s is None and sc.workload.arrival.process != "trace":
        requests = DEFAULT_REQUESTS
    warmup_s = parse_duration(warmup, "--warmup", allow_zero=True) if warmup else sim.warmup_s
    workload = sc.workload
    # One meaning everywhere (as `plan`): --requests / --duration are what is counted; the
    # warm-up's arrivals come on top, so a warm-up never swallows the run.
    if requests is not None:
        requests += math.ceil(workload.rate * warmup_s)
    if duration_s is not None:
        duration_s += warmup_s
    horizon = duration_s or (requests / workload.rate if requests else None)
    out = console()
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeElapsedColumn(), console=out, transient=True, disable=not out.is_terminal) as bar:
        task = bar.add_task("sim", total=horizon or 1.0)
        result = run_simulation(plan, workload, sc.step_models, sc.engines, sc.slo, requests=requests,
                                duration_s=duration_s, seed=sim.seed if seed is None else seed,
                                router=router or sim.router, exact=exact, warmup_s=warmup_s,
                                progress=lambda t: bar.update(task, completed=min(t, horizon or t)))
    out.print(summary_table(result.summary, f"Simulation of {sc.name}, plan {Path(plan_path).name}"))
    if output:
        for path in write_atomically(result, output, records_format):
            out.print(f"wrote {path}")
    if not result.summary["slo_ok"]:
        counted = result.summary["counted"]
        click.echo("SLO missed" if counted else "no request was counted (warm-up too long?)", err=True)
        raise click.exceptions.Exit(EXIT_GOAL_MISSED)


def write_atomically(result, output: str, records_format: str) -> list[Path]:
    """Write the result into a hidden staging directory, then rename each file into `output`:
    an interrupted run leaves the previous files or the new ones, never a truncated one."""
    import shutil
    import tempfile

    from melange.files import atomic_replace_dir_files

    Path(output).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".partial-", dir=output))
    try:
        result.write(staging, records_format)
        return atomic_replace_dir_files(staging, Path(output))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
