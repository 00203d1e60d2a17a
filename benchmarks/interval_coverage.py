"""Are attainment intervals honest? Per-seed 95 % intervals against the value pooled over all seeds.

    python benchmarks/interval_coverage.py [--seeds 16] [--requests 5000] [--gpu A10G] [--bucket 3,0] [--scale 1]

One instance of a GPU type fed one bucket of the default scenario at its profile's max rate (the
edge, where misses come in bursts), simulated on `--seeds` seeds. For each seed: the interval
`melange plan` reports (batch means over spans of time, never narrower than Wilson) and the plain
binomial Wilson interval. Prints the spread of the per-seed attainments against the binomial
spread, and the share of per-seed intervals that contain the pooled attainment; last line one
JSON object (`batch_coverage` must be >= 0.8; `wilson_coverage` is the binomial interval's).

The default cell (A10G, 250-500 in / 1-25 out, lengths uniform in the bucket as the profile search
drew them) misses a few requests at its max rate. Past the edge (`--scale 1.02` on a busy cell)
some seeds' queues run away while others stay clean: no interval from one run can cover that, and
the acceptance rule rejects such runs as unstable before any interval is read.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from copy import copy
from dataclasses import replace

import numpy as np

from melange.acceptance import batch_interval, wilson_interval
from melange.core import Plan
from melange.scenario import load_scenario
from melange.validate import run_check, run_settings


def main() -> None:
    """Run the seeds and print the coverage, JSON last."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=16)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--gpu", default="A10G")
    ap.add_argument("--bucket", default="3,0")
    ap.add_argument("--scale", type=float, default=1.0, help="Rate as a multiple of the profile's max rate.")
    args = ap.parse_args()
    i, j = (int(v) for v in args.bucket.split(","))
    base = load_scenario()
    sc = copy(base)
    onehot = np.zeros(base.workload.grid.shape)
    onehot[i, j] = 1.0
    rate = float(base.profiles[args.gpu].max_rate[i, j]) * args.scale
    sc.workload = replace(base.workload, distribution=onehot, rate=rate, lengths="uniform")  # as the search drew them
    sc.gpus = [g for g in base.gpus if g.name == args.gpu]
    plan = Plan({args.gpu: 1}, {args.gpu: onehot}, 1.0)
    settings = run_settings(sc, requests=args.requests)
    start = time.perf_counter()
    runs = [run_check(sc, plan, seed, settings) for seed in range(args.seeds)]
    att = np.array([r.met / r.verdict.counted for r in runs])
    pooled = sum(r.met for r in runs) / sum(r.verdict.counted for r in runs)
    batch = [batch_interval(r.batches) for r in runs]
    wilson = [wilson_interval(r.met, r.verdict.counted) for r in runs]
    inside = lambda ivs: float(np.mean([lo <= pooled <= hi for lo, hi in ivs]))  # noqa: E731
    n = float(np.mean([r.verdict.counted for r in runs]))
    print(f"{args.gpu} bucket {sc.workload.grid.label(i, j)} at {rate:.4g} req/s, {args.seeds} seeds x {n:.0f} counted")
    print(f"attainment per seed: mean {att.mean():.4f}, sd {att.std(ddof=1):.4f} "
          f"(binomial sd {math.sqrt(pooled * (1 - pooled) / n):.4f}); pooled {pooled:.4f}")
    for seed, a, b, w in zip(range(args.seeds), att, batch, wilson):
        print(f"  seed {seed:2d}: {a:.4f}  batch-means [{b[0]:.4f}, {b[1]:.4f}]  Wilson [{w[0]:.4f}, {w[1]:.4f}]")
    result = {"seeds": args.seeds, "gpu": args.gpu, "bucket": [i, j], "rate": round(rate, 4),
              "pooled": round(pooled, 5), "sd": round(float(att.std(ddof=1)), 5),
              "binomial_sd": round(math.sqrt(pooled * (1 - pooled) / n), 5),
              "batch_coverage": inside(batch), "wilson_coverage": inside(wilson),
              "wall_s": round(time.perf_counter() - start, 1)}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
