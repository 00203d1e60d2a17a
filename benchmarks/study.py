"""The paper's study: what Mélange saves over the best validated single GPU type.

    python benchmarks/study.py [--rates 1,2,4,8,16,32] [--requests N] [--workers N] [-o DIR]

For each built-in paper scenario (chat, summarization, mixed x TPOT 40 / 120 ms; Llama-2-7B,
paper-era engine, the paper's four GPUs and prices) it runs `melange study paper`'s compares:
at every rate, the Mélange plan that held on fresh simulated traffic against each GPU type's
fewest instances that hold. Prints each scenario's savings per rate, then one JSON object as the
last line: per scenario key (`chat_120ms`, ...) the mean saving over the rates where both sides
held, and `<key>_range` its [min, max].

Defaults are REDUCED to fit a two-core machine in minutes: rates 2, 8, 32 req/s and 2,000 counted
requests per simulated run (the acceptance rule still needs >= 500 counted and judges stability).
The full study is `--rates 1,2,4,8,16,32` with the scenarios' own run lengths (no --requests),
or `melange study paper`. Results resume from DIR (default: results/study).
"""

from __future__ import annotations

import argparse
import json
import time

from melange.study import LocalExecutor
from melange.study.compare import savings
from melange.study.paper import PAPER_SCENARIOS, run_study, study_savings


def main() -> None:
    """Run the (reduced) study and print the savings, JSON last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="2,8,32")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--scenarios", default=",".join(PAPER_SCENARIOS))
    ap.add_argument("-o", "--output", default="results/study")
    args = ap.parse_args()
    rates = tuple(float(r) for r in args.rates.split(","))
    start = time.perf_counter()
    tables = run_study(args.output, scenarios=tuple(args.scenarios.split(",")), rates=rates,
                       requests=args.requests or None, executor=LocalExecutor(args.workers),
                       on_scenario=lambda n: print(f"== {n}", flush=True))
    for name, table in tables.items():
        print(f"\n{name}\n{savings(table).to_string(index=False)}")
    result = {}
    for key, s in study_savings(tables).items():
        result[key] = s["mean"]
        result[f"{key}_range"] = [s["min"], s["max"]]
    result.update(rates=list(rates), requests=args.requests, wall_s=round(time.perf_counter() - start, 1))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
