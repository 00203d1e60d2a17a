"""`melange simulate`: replay a scenario's traffic through a plan's GPU fleet (SimPy)."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from melange.cli.options import parse_duration
from melange.core import MelangeError, Plan
from melange.scenario import load_scenario, read_document
from melange.sim import check_plan
from melange.sim import simulate as run_simulation
from melange.sim.router import ROUTERS

DEFAULT_REQUESTS = 10_000


def load_plan(path: str | Path) -> Plan:
    """A plan JSON as written by `melange solve -o` or `melange plan -o` (Plan.to_dict at the top
    level; `validation` and `baselines` beside it are ignored here)."""
    path = Path(path)
    data = read_document(path)
    if "counts" not in data and isinstance(data.get("best"), dict):
        data = data["best"]  # plan.json of melange plan before it became a plan itself
    try:
        return Plan.from_dict(data)
    except KeyError as exc:
        raise MelangeError(f"{path.name}: missing key {exc.args[0]!r} (expected a plan from melange solve -o)") from None
    except (TypeError, ValueError, AttributeError):
        raise MelangeError(f"{path.name}: not a plan (counts, share, cost)") from None


def summary_table(summary: dict, title: str) -> Table:
    """Headline numbers of a run: counts, attainment, latency percentiles, fleet use."""
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
@click.argument("scenario")
@click.option("--plan", "plan_path", required=True, metavar="PLAN.json",
              help="Plan to simulate, as written by `melange solve -o` or `melange plan -o`.")
@click.option("--duration", help="Simulate arrivals for this long: 1h, 30m, 90s, 120 (seconds).")
@click.option("--requests", type=click.IntRange(min=1), help="Simulate this many requests.")
@click.option("--seed", type=int, help="Random seed (default: the scenario's, else 0).")
@click.option("--router", type=click.Choice(list(ROUTERS)), help="Instance choice within a GPU type.")
@click.option("--warmup", help="Leave requests arriving before this out of the aggregates (e.g. 5m).")
@click.option("--exact", is_flag=True, help="Step-by-step engine (slow; the fast path's reference).")
@click.option("-o", "--output", type=click.Path(file_okay=False), help="Write records and summary.json here.")
@click.option("--records-format", type=click.Choice(["csv", "parquet"]), default="csv", show_default=True)
def simulate(scenario, plan_path, duration, requests, seed, router, warmup, exact, output, records_format):
    """Simulate SCENARIO's traffic served by the fleet in PLAN.json; print and save the results."""
    sc = load_scenario(scenario, force=True)  # profiles play no part in a simulation
    plan = load_plan(plan_path)
    if sc.slo is None:
        raise MelangeError(f"{Path(scenario).name}: slo: required to simulate")
    check_plan(plan, sc.workload, [g.name for g in sc.gpus], sc.step_models)
    sim = sc.simulation
    duration_s = parse_duration(duration) if duration else (None if requests else sim.duration_s)
    requests = requests or (None if duration else sim.requests)
    if requests is None and duration_s is None and sc.workload.arrival.process != "trace":
        requests = DEFAULT_REQUESTS
    warmup_s = parse_duration(warmup, "--warmup") if warmup else sim.warmup_s
    workload = sc.workload
    horizon = duration_s or (requests / workload.rate if requests else None)
    out = Console()
    with Progress(TextColumn("simulating"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f} s"),
                  TimeElapsedColumn(), console=out, transient=True, disable=not out.is_terminal) as bar:
        task = bar.add_task("sim", total=horizon or 1.0)
        result = run_simulation(plan, workload, sc.step_models, sc.engines, sc.slo, requests=requests,
                                duration_s=duration_s, seed=sim.seed if seed is None else seed,
                                router=router or sim.router, exact=exact, warmup_s=warmup_s,
                                progress=lambda t: bar.update(task, completed=min(t, horizon or t)))
    out.print(summary_table(result.summary, f"Simulation of {sc.name}, plan {Path(plan_path).name}"))
    if output:
        for path in result.write(output, records_format):
            out.print(f"wrote {path}")
