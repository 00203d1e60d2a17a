"""`melange fleet`: one plan for several models and SLO classes under shared caps, proven per pool."""

from __future__ import annotations

import click

from melange.cli.options import SEED, check_output, interruptible


def _counts(counts: dict[str, int]) -> str:
    from melange.report import counts_text

    return counts_text(counts) or "-"


def _short(reason: str) -> str:
    """A left-out pair's reason in a few words (the JSON and `melange gpus` keep the whole)."""
    for key, short in (("does not fit", "weights do not fit"), ("no room", "no room for a KV cache"),
                       ("below one", "KV cache below one longest request"), ("divide", "TP must divide the heads"),
                       ("node holds", "more GPUs than a node")):
        if key in reason:
            return short
    return reason


def print_fleet(out, fleet) -> None:
    """The services, their traffic and SLO, the shared limits, and the (GPU × TP) pairs left out."""
    from rich.table import Table

    from melange.cli.plan import describe_slo

    caps = ", ".join(f"{h} ≤ {n} GPUs" for h, n in fleet.shared.caps.items()) or "none"
    budget = f", budget ${fleet.shared.budget:g}/h" if fleet.shared.budget else ""
    out.print(f"[bold]{fleet.name}[/]: {len(fleet.models())} models, {len(fleet.services)} services; shared caps: "
              f"{caps}{budget}; prices: {fleet.prices or 'the scenarios’'}")
    for note in fleet.notes:
        out.print(f"  price: {note}")
    table = Table(title="Services (a model's class each; classes never share an instance)")
    for col in ("service", "req/s", "SLO", "instance types", "left out"):
        table.add_column(col, justify="right" if col == "req/s" else "left")
    for s, sc in fleet.services.items():
        groups: dict[str, list[str]] = {}
        for t, why in sc.excluded.items():
            groups.setdefault(_short(why), []).append(t)
        left = "; ".join(f"{', '.join(ts)}: {why}" for why, ts in groups.items())
        table.add_row(s, f"{sc.workload.rate:g}", describe_slo(sc.slo), ", ".join(g.name for g in sc.gpus), left)
    out.print(table)


def economics_table(fleet, plans: dict):
    """Per service, the instance types by $/h per req/s of its mix, the chosen ones marked: why."""
    from rich.table import Table

    from melange.fleet import instance_economics

    table = Table(title="Why these instances: $/h per req/s one instance carries of the service's mix (profiles)")
    for col in ("service", "type", "GPUs", "$/h", "req/s", "$/h per req/s", "chosen"):
        table.add_column(col, justify="left" if col in ("service", "type") else "right")
    for s, sc in fleet.services.items():
        counts = {} if plans.get(s) is None else plans[s].counts
        for e in instance_economics(sc)[:6]:
            rate = f"{e['rate']:.3g}" if e["serves_all"] else "part of mix"
            per = f"{e['per_rate']:.2f}" if e["serves_all"] else "-"
            table.add_row(s, e["type"], str(e["gpus"]), f"{e['cost']:.3f}", rate, per,
                          str(counts.get(e["type"], 0) or ""))
    return table


def why_lines(fleet, plans: dict) -> list[str]:
    """One line per service: the instance types chosen and why (the cheapest per req/s of its mix
    at its SLO, by its profiles), e.g. 'llama-2-70b on 1×8xH100: 8xH100 is the cheapest per req/s'."""
    from melange.fleet import instance_economics

    lines = []
    for s, sc in fleet.services.items():
        plan = plans.get(s)
        if plan is None:
            continue
        ranked = [e for e in instance_economics(sc) if e["serves_all"]]
        chosen = [g for g, n in plan.counts.items() if n]
        if not ranked or not chosen:
            continue
        best = ranked[0]
        why = (f"{best['type']} is the cheapest per req/s of this mix at this SLO "
               f"(${best['per_rate']:.2f}/h per req/s, {best['rate']:.3g} req/s an instance)")
        if best["type"] not in chosen:
            why += "; the shared caps or the buckets' split chose otherwise"
        elif len(chosen) > 1:
            why += "; the others carry the buckets they serve for less, or the rest under the caps"
        lines.append(f"{s} on {_counts(plan.counts)}: {why}")
    return lines


def results_table(title: str, results: dict):
    """One row per service: counts, $/h, attainment on fresh seeds, goodput, held."""
    from rich.table import Table

    from melange.cli.plan import pct

    table = Table(title=title)
    for col in ("service", "instances", "$/h", "attainment", "goodput req/s", "held"):
        table.add_column(col, justify="left" if col in ("service", "instances") else "right")
    for s, r in results.items():
        c = r.confirmation
        table.add_row(s, _counts({} if r.plan is None else r.plan.counts),
                      "-" if r.plan is None else f"{r.plan.cost:.3f}",
                      "-" if c is None else pct(c.attainment), "-" if r.goodput is None else f"{r.goodput:.3g}",
                      "yes" if r.held else "[red]no[/]")
    return table


@click.command()
@click.argument("fleet_file", required=False)
@click.option("--prices", help="Cloud prices: aws, lambda (dated SkyPilot snapshots) or a CSV in that format.")
@click.option("--solve-only", is_flag=True, help="Only the joint MILP on the profiles (no simulation).")
@click.option("--rounds", "max_rounds", type=click.IntRange(1, 50), default=5, show_default=True)
@click.option("--requests", type=click.IntRange(min=1), help="Counted requests per run.")
@click.option("--seed", type=SEED, help="Tuning seed (default: each scenario's); fresh seeds follow it.")
@click.option("--confirm", "confirm_runs", type=click.IntRange(1, 20), default=2, show_default=True)
@click.option("--workers", type=click.IntRange(1, 64), default=1, show_default=True)
@click.option("--no-split", is_flag=True, help="Skip planning each model on a static share of the caps.")
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Write the report as JSON here; each service's answer is logged beside it as it finishes "
                   "(OUTPUT.services.jsonl) and a re-run of the same inputs resumes from it.")
@click.pass_context
def fleet(ctx, fleet_file, prices, solve_only, max_rounds, requests, seed, confirm_runs, workers, no_split, output):
    """Cheapest fleet for several models and SLO classes (FLEET_FILE, default: built-in two-models)
    under shared GPU caps and a budget, the TP degree of each instance chosen, each pool proven."""
    import json

    from melange.cli import EXIT_GOAL_MISSED
    from melange.fleet import load_fleet
    from melange.files import atomic_write_text
    from melange.report import console

    check_output(output, "-o")
    fl = load_fleet(fleet_file, prices=prices)
    out = console()
    print_fleet(out, fl)
    if solve_only:
        from melange.fleet import solve_fleet

        solved = solve_fleet(fl, split=not no_split)
        joint = solved.joint
        out.print(economics_table(fl, joint.plans))
        for line in why_lines(fl, joint.plans):
            out.print(line)
        out.print(f"fleet: ${joint.cost:.3f}/h ({joint.status}, {joint.method}, gap {joint.gap:.2%}, "
                  f"{joint.solve_time_s:.2f} s); each service alone, ignoring the caps: ${joint.separable_cost:.3f}/h")
        if solved.split is not None:
            for m, part in solved.split.items():
                out.print(f"split: {m} on {solved.split_caps[m]}: " +
                          "; ".join(f"{_counts(p.counts)} ${p.cost:.3f}/h" for p in part.plans.values()))
            out.print(f"joint ${joint.cost:.3f}/h against each model on a static share of the caps "
                      f"${solved.split_cost:.3f}/h: saves {1 - joint.cost / solved.split_cost:.1%}")
        if output:
            atomic_write_text(output, json.dumps(joint.to_dict(), indent=1))
        return
    from pathlib import Path

    from melange.validate.fleet import plan_fleet

    log = None if output is None else Path(output).with_suffix(".services.jsonl")
    if log is not None and log.is_file():
        out.print(f"resuming from {log}: each service answer of the same inputs there is read back")
    with out.status("planning…") as status:
        report = interruptible(plan_fleet, fl, max_rounds=max_rounds, requests=requests, seed=seed,
                               confirm_runs=confirm_runs, workers=workers, compare_split=not no_split,
                               progress=status.update, log=log)
    out.print(economics_table(fl, {s: r.plan for s, r in report.services.items()}))
    for line in why_lines(fl, {s: r.plan for s, r in report.services.items()}):
        out.print(line)
    out.print(results_table(f"Fleet plan ({report.method})", report.services))
    if report.sources:
        out.print("each service's answer is its cheapest held plan that keeps the shared limits: " +
                  "; ".join(f"{s} from {src}" for s, src in report.sources.items()))
    for m in fl.models():
        cost = [r.plan.cost for s, r in report.services.items() if fl.model_of[s] == m and r.plan]
        out.print(f"{m}: ${sum(cost):.3f}/h")
    total = report.cost
    out.print(f"[bold]fleet[/]: {'-' if total is None else f'${total:.3f}/h'}, "
              f"{'held on fresh traffic' if report.held else '[red]did not hold[/]'}")
    if report.broken:
        out.print(f"each service planned alone: ${report.to_dict()['alone_cost']:.3f}/h, but together they break "
                  f"{'; '.join(report.broken)}")
    if report.split is not None:
        out.print(results_table("Each model alone on a static share of the caps "
                                f"({report.split_caps})", report.split))
        if report.split_error:
            out.print(f"[yellow]no split plan: {report.split_error}[/]")
        split = report.to_dict()["split_cost"]
        if split is not None and total is not None:
            out.print(f"joint ${total:.3f}/h against split ${split:.3f}/h: saves {1 - total / split:.1%}")
    if output:
        atomic_write_text(output, json.dumps(report.to_dict(), indent=1))
        out.print(f"wrote {output}")
    if not report.held:
        ctx.exit(EXIT_GOAL_MISSED)
