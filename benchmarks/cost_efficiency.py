"""A10G vs A100-80GB tokens per dollar per bucket for Llama-2-7B, from sim-profiles.

Tokens per dollar of a bucket = max_rate x mean output tokens x 3600 / ($/h). The ratio printed
is A10G / A100 (> 1: the A10G is more cost-efficient). The paper measured A10G up to 72 % better
on small requests and the A100 up to 38 % better on large ones (TPOT SLO 120 ms, mean definition).
The last line is one JSON object: the mean ratio over the small buckets (input <= 100, output
<= 100) and over the large ones (input >= 2000, output >= 250) at both SLOs. The engine preset is
the paper's (`vllm-0.2`): with today's CPU overheads the A100 wins the small buckets too.

Profiles are cached (see melange.perf.profile_sim), so a second run is fast; a first run takes
tens of minutes on 2 cores. Usage: python benchmarks/cost_efficiency.py [--workers N]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from melange.core import BucketGrid, EngineConfig, Slo
from melange.perf import RooflineParams, build_profile, load_catalog

MODEL = "llama-2-7b"
MAX_MODEL_LEN = 32768  # the paper's grid reaches 16k-token inputs, beyond Llama-2's 4k context
CHUNK_TOKENS = 2048  # chunked prefill, vLLM V1's online-serving token budget
PAPER_ERA = RooflineParams(preset="vllm-0.2")  # the CPU overheads of the vLLM the paper measured


def tokens_per_dollar(max_rate: np.ndarray, grid: BucketGrid, cost: float) -> np.ndarray:
    """Output tokens per dollar per bucket at the profile's max rate."""
    out = np.asarray(grid.out_edges, dtype=float)
    mean_out = (out[:-1] + out[1:] - 1) / 2  # lengths are uniform in [lo, hi)
    return max_rate * mean_out[None, :] * 3600.0 / cost


def region_ratio(ratio: np.ndarray, mask: np.ndarray) -> float | None:
    """Mean A10G/A100 ratio over the buckets of `mask` that the A100 serves."""
    values = ratio[mask & np.isfinite(ratio)]
    return float(values.mean()) if len(values) else None


def main() -> None:
    """Print the per-bucket ratios at 120 ms and 40 ms, then the JSON summary line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    catalog = load_catalog()
    grid = BucketGrid.paper()
    engine = EngineConfig(max_model_len=MAX_MODEL_LEN, max_num_batched_tokens=CHUNK_TOKENS)
    ins = np.asarray(grid.in_edges)
    outs = np.asarray(grid.out_edges)
    small = (ins[1:, None] <= 100) & (outs[None, 1:] <= 100)
    large = (ins[:-1, None] >= 2000) & (outs[None, :-1] >= 250)
    summary = {}
    for tpot in (120.0, 40.0):
        slo = Slo(tpot, "mean")
        tpd = {}
        for gpu in ("A10G", "A100-80GB", "L4"):
            start = time.perf_counter()
            prof = build_profile(gpu, MODEL, slo, grid, engine=engine, catalog=catalog, workers=args.workers,
                                 roofline=PAPER_ERA)
            tpd[gpu] = tokens_per_dollar(prof.max_rate, grid, catalog.instance(gpu).cost)
            print(f"# {gpu} @ {tpot:g} ms: profile in {time.perf_counter() - start:.1f} s")
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(tpd["A100-80GB"] > 0, tpd["A10G"] / tpd["A100-80GB"], np.nan)
        print(f"A10G / A100-80GB tokens per dollar, TPOT {tpot:g} ms (mean); rows input, columns output")
        print("input \\ output " + " ".join(f"{f'{a}-{b}':>10}" for a, b in zip(outs[:-1], outs[1:])))
        for i in range(grid.shape[0]):
            cells = " ".join(f"{'-' if not np.isfinite(v) else f'{v:.2f}':>10}" for v in ratio[i])
            print(f"{f'{ins[i]}-{ins[i + 1]}':>14} {cells}")
        tag = f"{tpot:g}ms"
        summary[f"small_ratio_{tag}"] = region_ratio(ratio, small)
        summary[f"large_ratio_{tag}"] = region_ratio(ratio, large)
        with np.errstate(divide="ignore", invalid="ignore"):
            l4 = np.where(tpd["A100-80GB"] > 0, tpd["L4"] / tpd["A100-80GB"], np.nan)
        summary[f"l4_small_ratio_{tag}"] = region_ratio(l4, small)
        summary[f"l4_large_ratio_{tag}"] = region_ratio(l4, large)
    print(json.dumps({k: (None if v is None else round(v, 4)) for k, v in summary.items()}))


if __name__ == "__main__":
    main()
