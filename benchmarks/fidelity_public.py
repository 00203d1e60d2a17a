"""The step model against public measurements of real GPUs (melange/scenarios/measurements/).

Kernel rows (Vidur's A100 SXM, H100 SXM and A40 tables) go through the roofline's GPU time; serving
runs (Lambda's vLLM v0.5.4 benchmark) and the published single-request figures go through the
simulator's own instance engine with their exact lengths. Prints predicted, measured and ratio
per point, then one JSON object: median_abs_error, worst_ratio, points, held-out and fitted
parts, per source and per GPU.

    python benchmarks/fidelity_public.py                 # the calibrated catalog
    python benchmarks/fidelity_public.py --uncalibrated  # before: 0.6/0.8, perfect overlap, no
                                                         # kernel floor, Lambda on vllm-0.23
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from melange.perf.catalog import Calibration, load_catalog
from melange.validate import fidelity


def main() -> None:
    """Every point, then the summary line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--uncalibrated", action="store_true",
                    help="the model before calibration (default efficiencies, Lambda on vllm-0.23)")
    ap.add_argument("--quiet", action="store_true", help="only the summary")
    args = ap.parse_args()
    catalog = load_catalog()
    if args.uncalibrated:
        catalog = dataclasses.replace(catalog, calibration=Calibration())
        points = (fidelity.kernel_points(catalog) + fidelity.lambda_points(catalog, preset="vllm-0.23")
                  + fidelity.published_points(catalog))
    else:
        points = fidelity.all_points(catalog)
    if not args.quiet:
        print(f"{'source':<10}{'gpu':<15}{'model':<13}{'conditions':<52}{'metric':<19}"
              f"{'measured':>10}{'predicted':>11}{'ratio':>7}  part")
        for p in points:
            print(f"{p.source:<10}{p.gpu:<15}{p.model:<13}{p.conditions:<52}{p.metric:<19}"
                  f"{p.measured:>10.2f}{p.predicted:>11.2f}{p.ratio:>7.3f}  "
                  f"{'held out' if p.heldout else 'fitted'}")
    s = fidelity.summary(points)
    print(f"\n{s['points']} points: median |error| {s['median_abs_error']:.1%}, worst ratio "
          f"{s['worst_ratio']:.3f}; held out ({s['heldout']['points']}): "
          f"{s['heldout']['median_abs_error']:.1%}, worst {s['heldout']['worst_ratio']:.3f}")
    print(json.dumps(dict(s, calibrated=not args.uncalibrated)))


if __name__ == "__main__":
    main()
