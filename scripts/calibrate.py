"""Fit the step model to the public measurement set and write catalog/calibration.yaml.

    python scripts/calibrate.py            # fit, print, write
    python scripts/calibrate.py --check    # fit and fail if the shipped file differs

Least squares on log(predicted / measured), on the rows melange.validate.fidelity does not hold
out:
1. GPU side, on Vidur's kernel rows: per GPU family a FLOP and a bandwidth efficiency; for all,
   the overlap (share of min(compute, memory) not hidden) and the per-layer kernel floor. An
   exhaustive grid (coarse, then fine around the best): the problem is small and a grid cannot
   stop in a local minimum.
2. CPU side, per engine preset, by coordinate descent:
   - `vllm-0.5` on Lambda's vLLM v0.5.4 runs replayed through the engine: overhead per step, per
     running sequence and per prefilling step, and the API server's time per request;
   - `vllm-0.2` and `vllm-0.23` on the published single-request figures (published.yaml): the
     overhead per step only (one request at a time says nothing about the per-sequence cost;
     that stays catalog/engines.yaml's starting value).
Each family's and preset's uncertainty is the RMS of its log residuals over all its points
(fitted and held out), at least 5 % with 10 or more points and at least 15 % with fewer (a fit
to one or two figures knows little).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import numpy as np

from melange.perf.catalog import Calibration, EnginePreset, FamilyFit, load_catalog
from melange.perf.roofline import RooflineParams
from melange.validate import fidelity

OUT = Path(__file__).resolve().parent.parent / "melange" / "scenarios" / "catalog" / "calibration.yaml"
MIN_UNCERTAINTY = 0.05
THIN_UNCERTAINTY = 0.15  # floor for a fit to fewer than THIN_POINTS points
THIN_POINTS = 10
EFF_GRID = np.round(np.arange(0.30, 1.0001, 0.01), 2)


def kernel_terms(catalog, rows):
    """Per row: compute and memory seconds at efficiency 1, and the layer count."""
    unit = RooflineParams(flops_efficiency=1.0, bandwidth_efficiency=1.0)
    c, m, layers = [], [], []
    for r in rows.itertuples():
        k = fidelity.kernel_model(catalog, r.gpu, r.model, r.tp, unit)
        c.append(k.compute_time(0, r.tokens, 0))
        m.append(k.memory_time(0, r.tokens, 0))
        layers.append(catalog.model(r.model).layers)
    return np.array(c), np.array(m), np.array(layers, dtype=float)


def fit_family(c, m, layers, t, overlap, floor_s):
    """Best (error, flops_eff, bw_eff) for one family at a given overlap and floor."""
    cc = c[None, None, :] / EFF_GRID[:, None, None]
    mm = m[None, None, :] / EFF_GRID[None, :, None]
    pred = floor_s * layers + np.maximum(cc, mm) + overlap * np.minimum(cc, mm)
    err = (np.log(pred / t) ** 2).sum(-1)
    i, j = np.unravel_index(err.argmin(), err.shape)
    return float(err[i, j]), float(EFF_GRID[i]), float(EFF_GRID[j])


def fit_gpu_side(catalog):
    """(overlap, floor_s, {family: (flops_eff, bw_eff)}) minimising the training rows' error."""
    rows = fidelity.kernel_rows()
    train = rows[~rows.heldout].reset_index(drop=True)
    c, m, layers = kernel_terms(catalog, train)
    t = train.ms.to_numpy() / 1e3
    fam = np.array([str(catalog.gpu(g).family) for g in train.gpu])

    def total(overlap, floor_s):
        fits, err = {}, 0.0
        for f in sorted(set(fam)):
            s = fam == f
            e, a, b = fit_family(c[s], m[s], layers[s], t[s], overlap, floor_s)
            fits[str(f)], err = (a, b), err + e
        return err, fits

    best = min(((total(k, d), k, d) for k in np.arange(0, 1.0001, 0.05) for d in np.arange(0, 80e-6, 5e-6)),
               key=lambda x: x[0][0])
    (_, _), k0, d0 = best
    best = min(((total(k, d), k, d) for k in np.arange(max(k0 - 0.05, 0), min(k0 + 0.05, 1) + 1e-9, 0.01)
                for d in np.arange(max(d0 - 5e-6, 0), d0 + 5.01e-6, 1e-6)), key=lambda x: x[0][0])
    (_, fits), k, d = best
    return round(float(k), 2), round(float(d) * 1e6, 1), fits


def log_rms(points) -> float:
    """RMS of log(predicted / measured), at least MIN_UNCERTAINTY (THIN_UNCERTAINTY when thin)."""
    floor = MIN_UNCERTAINTY if len(points) >= THIN_POINTS else THIN_UNCERTAINTY
    if not points:
        return floor
    rms = math.sqrt(sum(math.log(p.ratio) ** 2 for p in points) / len(points))
    return round(max(rms, floor), 3)


def with_preset(catalog, preset: EnginePreset):
    """`catalog` with `preset` in place of its namesake."""
    return dataclasses.replace(catalog, engines={**catalog.engines, preset.name.lower(): preset})


def descend(err, x: list[float], steps: list[float], floors: list[float]) -> list[float]:
    """Coordinate descent: try ± each step, halve the steps when nothing improves."""
    best = err(x)
    while any(s >= f for s, f in zip(steps, floors)):
        moved = False
        for i in range(len(x)):
            for sign in (1, -1):
                y = list(x)
                y[i] = round(y[i] + sign * steps[i], 3)
                e = err(y)
                if e < best:
                    x, best, moved = y, e, True
        if not moved:
            steps = [s / 2 for s in steps]
    return x


def preset_of(start: EnginePreset, v: list[float]) -> EnginePreset:
    """`start` with (overhead_ms, per_seq_us, prefill_overhead_ms, arrival_gap_ms) = v."""
    return dataclasses.replace(start, overhead_s=v[0] / 1e3, per_seq_s=v[1] / 1e6,
                               prefill_overhead_s=v[2] / 1e3, arrival_gap_s=v[3] / 1e3)


def start_of(p: EnginePreset) -> list[float]:
    """A preset's numbers in the fit's units."""
    return [p.overhead_s * 1e3, p.per_seq_s * 1e6, p.prefill_overhead_s * 1e3, p.arrival_gap_s * 1e3]


def fit_lambda_preset(catalog, runs) -> EnginePreset:
    """vllm-0.5: all four numbers on the training runs' squared log ratios."""
    train = [r for r in runs if not r["heldout"]]
    start = catalog.engine(fidelity.LAMBDA_PRESET)

    def err(v):
        if min(v) < 0:
            return math.inf
        cat = with_preset(catalog, preset_of(start, v))
        return sum(math.log(p.ratio) ** 2 for p in fidelity.lambda_points(cat, train))

    return preset_of(start, descend(err, start_of(start), [1.0, 20.0, 5.0, 0.5], [0.05, 1.0, 0.25, 0.05]))


def fit_published_preset(catalog, name: str) -> EnginePreset:
    """A preset's overhead per step on its published single-request figures."""
    start = catalog.engine(name)

    def err(v):
        if v[0] < 0:
            return math.inf
        cat = with_preset(catalog, preset_of(start, [v[0], *start_of(start)[1:]]))
        return sum(math.log(p.ratio) ** 2 for p in fidelity.published_points(cat)
                   if p.preset == name and not p.heldout)

    overhead = descend(err, [start_of(start)[0]], [0.5], [0.01])[0]
    return preset_of(start, [overhead, *start_of(start)[1:]])


def render(overlap, floor_us, families, presets) -> str:
    """calibration.yaml's text."""
    lines = ["# Generated by scripts/calibrate.py from melange/scenarios/measurements/ - do not edit;",
             "# re-run the script after changing the measurement set or the roofline.",
             "calibration:",
             f"  overlap: {overlap}",
             f"  layer_floor_us: {floor_us}",
             "  families:"]
    for f in families:
        lines += [f"    - family: {f.source.split(':')[0]}",
                  f"      flops_efficiency: {f.flops_efficiency}",
                  f"      bandwidth_efficiency: {f.bandwidth_efficiency}",
                  f"      uncertainty: {f.uncertainty}",
                  f"      points: {f.points}",
                  f"      gpus: [{', '.join(f.gpus)}]",
                  f"      source: \"{f.source}\""]
    lines.append("  presets:")
    for p, points, fitted_to in presets:
        lines += [f"    - name: {p.name}",
                  f"      overhead_ms: {round(p.overhead_s * 1e3, 3)}",
                  f"      per_seq_us: {round(p.per_seq_s * 1e6, 3)}",
                  f"      prefill_overhead_ms: {round(p.prefill_overhead_s * 1e3, 3)}",
                  f"      arrival_gap_ms: {round(p.arrival_gap_s * 1e3, 3)}",
                  f"      uncertainty: {p.uncertainty}",
                  f"      points: {points}",
                  f"      fitted_to: \"{fitted_to}\""]
    return "\n".join(lines) + "\n"


def main() -> int:
    """Fit, print and write (or --check) the calibration."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the shipped file differs")
    args = ap.parse_args()
    base = dataclasses.replace(load_catalog(), calibration=Calibration())
    overlap, floor_us, fits = fit_gpu_side(base)
    print(f"GPU side: overlap {overlap}, layer floor {floor_us} us, efficiencies {fits}")
    fam_cal = Calibration(overlap, floor_us / 1e6, {
        f: FamilyFit(a, b, 1.0) for f, (a, b) in fits.items()})
    cat = dataclasses.replace(base, calibration=fam_cal)
    kernel = fidelity.kernel_points(cat)
    families = []
    for f, (a, b) in sorted(fits.items()):
        pts = [p for p in kernel if cat.gpu(p.gpu).family == f]
        gpus = sorted({p.gpu for p in pts})
        families.append(FamilyFit(a, b, log_rms(pts), len(pts),
                                  f"{f}: Vidur kernel tables on {', '.join(gpus)}, {len(pts)} rows", tuple(gpus)))
    cat = dataclasses.replace(cat, calibration=Calibration(overlap, floor_us / 1e6,
                                                           {f.source.split(':')[0]: f for f in families}))
    runs = fidelity.lambda_runs()
    presets = []
    lam = fit_lambda_preset(cat, runs)
    cat = with_preset(cat, lam)
    points = fidelity.lambda_points(cat, runs)
    presets.append((dataclasses.replace(lam, uncertainty=log_rms(points)), len(points),
                    f"{sum(not r['heldout'] for r in runs)} Lambda vLLM v0.5.4 runs (mean TTFT, mean TPOT, "
                    f"output tokens/s), {sum(r['heldout'] for r in runs)} more held out"))
    for name in ("vllm-0.2", "vllm-0.23"):
        p = fit_published_preset(cat, name)
        cat = with_preset(cat, p)
        pts = [q for q in fidelity.published_points(cat) if q.preset == name]
        presets.append((dataclasses.replace(p, uncertainty=log_rms(pts)), len(pts),
                        f"{len(pts)} published single-request ITL figure(s), "
                        "melange/scenarios/measurements/published.yaml; per-sequence cost as set by hand"))
    for p, n, _ in presets:
        print(f"{p.name}: {p.overhead_s * 1e3:.3f} ms + {p.per_seq_s * 1e6:.1f} us/seq, prefill "
              f"+{p.prefill_overhead_s * 1e3:.2f} ms, requests {p.arrival_gap_s * 1e3:.2f} ms apart, "
              f"uncertainty {p.uncertainty} ({n} points)")
    text = render(overlap, floor_us, families, presets)
    if args.check:
        if OUT.read_text() != text:
            print(f"{OUT.name} differs from the fit: run scripts/calibrate.py", file=sys.stderr)
            return 1
        print(f"{OUT.name} matches the fit")
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
