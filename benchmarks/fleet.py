"""Fleets: several models and SLO classes on one fleet, every answer proven in simulation.

1. `two-models` (Llama-2-70B at 20 req/s and Llama-2-7B at 40 req/s sharing 12 H100s): the joint
   plan against each model planned alone (which breaks the cap) and against each model on a
   static share of the cap; all validated.
2. TP choice against a fixed TP degree for Llama-2-70B, at 2, 8 and 20 req/s: the cheapest plan
   that held with every (GPU x TP) instance, and with TP 2, 4 or 8 only.
3. `chat-batch` (Llama-2-7B, an interactive class and a batch class): the joint plan against
   planning all of the traffic at the interactive SLO.

Run: nice python benchmarks/fleet.py [--quick] [--part two_models|tp_choice|chat_batch]
      [--save docs/fleet_benchmark.json]
Prints one line per result, then one JSON object as the last line; --save merges the parts run
into the file (so parts can run apart).
"""

from __future__ import annotations

import json
import sys
import time
from copy import copy
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from melange.fleet import BUILTIN_FLEETS, load_fleet, solve_fleet  # noqa: E402
from melange.scenario import load_scenario  # noqa: E402
from melange.validate import plan_cheapest  # noqa: E402
from melange.validate.fleet import plan_fleet  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TP_RATES = (2.0, 8.0, 20.0)


def rows(results: dict) -> dict:
    """Per service: counts, $/h, attainment on fresh seeds, goodput, held."""
    return {s: r.to_dict() for s, r in results.items()}


def two_models(requests: int | None) -> dict:
    """Step 1 of the module docstring."""
    fleet = load_fleet("two-models")
    start = time.perf_counter()
    solved = solve_fleet(fleet)
    report = plan_fleet(fleet, requests=requests)
    d = report.to_dict()
    out = {"method": report.method, "held": report.held, "cost": report.cost, "alone_cost": d["alone_cost"],
           "broken": report.broken, "split_cost": d["split_cost"], "split_caps": report.split_caps,
           "services": rows(report.services), "alone": rows(report.alone),
           "split": None if report.split is None else rows(report.split),
           "profiles_joint_cost": solved.joint.cost, "profiles_split_cost": solved.split_cost,
           "seconds": round(time.perf_counter() - start, 1)}
    print(f"two-models: joint ${report.cost:.3f}/h ({report.method}, held {report.held}); alone "
          f"${d['alone_cost']:.3f}/h breaks {report.broken}; split ${d['split_cost']:.3f}/h", flush=True)
    return out


def tp_choice(requests: int | None, rates) -> list[dict]:
    """Step 2 of the module docstring."""
    base = load_scenario(BUILTIN_FLEETS / "llama-2-70b-chat.yaml")
    out = []
    for rate in rates:
        row = {"rate": rate}
        for label, keep in (("chosen", None), ("tp2", 2), ("tp4", 4), ("tp8", 8)):
            sc = copy(base)
            sc.workload = replace(base.workload, rate=rate)
            if keep is not None:
                sc.gpus = [g for g in base.gpus if g.gpus == keep]
            report = plan_cheapest(sc, requests=requests)
            best = report.best
            row[label] = None if best is None else {"cost": best.cost, "counts": {g: n for g, n in best.counts.items() if n},
                                                    "attainment": report.validation.attainment}
            print(f"70B at {rate:g} req/s, {label}: " + ("no plan held" if best is None else
                  f"${best.cost:.3f}/h {row[label]['counts']}"), flush=True)
        out.append(row)
    return out


def chat_batch(requests: int | None) -> dict:
    """Step 3 of the module docstring."""
    fleet = load_fleet("chat-batch")
    report = plan_fleet(fleet, requests=requests)
    strict = load_fleet("chat-batch-interactive")
    all_interactive = plan_fleet(strict, requests=requests)
    out = {"cost": report.cost, "held": report.held, "services": rows(report.services),
           "all_interactive_cost": all_interactive.cost, "all_interactive_held": all_interactive.held,
           "all_interactive": rows(all_interactive.services),
           "targets": {s: sc.slo.attainment for s, sc in fleet.services.items()}}
    print(f"chat-batch: ${report.cost:.3f}/h (held {report.held}) against all at the interactive SLO "
          f"${all_interactive.cost:.3f}/h (held {all_interactive.held})", flush=True)
    return out


def main() -> None:
    """Every step, then the JSON summary (saved with --save PATH)."""
    quick = "--quick" in sys.argv
    requests = 2000 if quick else None
    parts = {"two_models": lambda: two_models(requests),
             "tp_choice": lambda: tp_choice(requests, TP_RATES[:1] if quick else TP_RATES),
             "chat_batch": lambda: chat_batch(requests)}
    only = sys.argv[sys.argv.index("--part") + 1] if "--part" in sys.argv else None
    summary = {name: run() for name, run in parts.items() if only in (None, name)}
    if "--save" in sys.argv:
        path = ROOT / sys.argv[sys.argv.index("--save") + 1]
        saved = json.loads(path.read_text()) if path.is_file() else {}
        path.write_text(json.dumps({**saved, **summary}, indent=1) + "\n")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
