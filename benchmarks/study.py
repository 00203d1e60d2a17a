"""The paper's study: what Mélange saves, in the paper's convention and validated, and how well the
solver's capacities agree with the simulated fleet.

    python benchmarks/study.py [--rates 1,2,4,8,16,32] [--requests N] [--workers N] [-o DIR]

For each built-in paper scenario (chat, summarization, mixed x TPOT 40 / 120 ms under the paper's
mean-ITL rule; Llama-2-7B, paper-era engine, the paper's four GPUs and prices) it runs `melange
study paper`'s compares and prints, per scenario, the validated savings per rate. The last line is
one JSON object: per setting `<workload>_<slo>` (e.g. `chat_120ms`), `<key>_paper_range` (solver
against solver in the paper's convention: each single type's saving averaged over the rates,
min..max over the types), `<key>_paper` (the paper's range), `<key>_best_single` (against the
cheapest single type per rate, solver), `<key>_validated_min` / `_max` (both sides minimised by
simulation); and `capacity_error_within_15pct` (share of (type, point) pairs whose solver count is
within 15 % or one instance of the fewest that hold the type's share) and `capacity_error_worst`
(the largest ratio, or its inverse, over pairs of at least 4 instances).

Defaults are REDUCED to fit a two-core machine: rates 2, 8, 32 req/s and 3,000 counted requests
per simulated run (the acceptance rule still needs >= 500 counted and judges stability). The full
study is `--rates 1,2,4,8,16,32` with the scenarios' own run lengths (no --requests), or `melange
study paper`. Results resume from DIR (default: results/study).
"""

from __future__ import annotations

import argparse
import json
import time

from melange.study import LocalExecutor
from melange.study.compare import savings
from melange.study.paper import PAPER_SCENARIOS, capacity_summary, run_study, study_savings


def main() -> None:
    """Run the (reduced) study and print the savings, JSON last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rates", default="2,8,32")
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--workers", type=int, default=None)
    ap.add_argument("--scenarios", default=",".join(PAPER_SCENARIOS))
    ap.add_argument("-o", "--output", default="results/study")
    ap.add_argument("--save", help="Also write the JSON summary to this file (the README quotes docs/study_reduced.json).")
    args = ap.parse_args()
    rates = tuple(float(r) for r in args.rates.split(","))
    start = time.perf_counter()
    tables = run_study(args.output, scenarios=tuple(args.scenarios.split(",")), rates=rates,
                       requests=args.requests or None, executor=LocalExecutor(args.workers),
                       on_scenario=lambda n: print(f"== {n}", flush=True))
    for name, table in tables.items():
        print(f"\n{name}\n{savings(table).to_string(index=False)}")
    result, pairs = {}, []
    for key, s in study_savings(tables, args.output).items():
        result[f"{key}_paper_range"] = s["paper_range"]
        result[f"{key}_paper"] = s["paper"]
        result[f"{key}_best_single"] = s["best_single"]
        result[f"{key}_validated_min"], result[f"{key}_validated_max"] = s["min"], s["max"]
        pairs += s["capacity"]
    cap = capacity_summary(pairs)
    result.update(capacity_error_within_15pct=cap["within_15pct"], capacity_error_worst=cap["worst"],
                  capacity_pairs=cap["pairs"], rates=list(rates), requests=args.requests,
                  wall_s=round(time.perf_counter() - start, 1))
    if args.save:
        from pathlib import Path

        Path(args.save).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
