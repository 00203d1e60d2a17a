"""Check a plan against its own constraints without any solver: capacity in exact arithmetic.

A type's load is sum_b r[b] · share[b,g] / cap[b,g], computed with fractions.Fraction from the
same float data the optimizer was given, so a plan loading a type beyond its count by any amount,
however small, is caught. A sliced plan's shares are read as whole slices k/S, and its loads must
fit exactly. A continuous plan's shares are real numbers stored as floats (normalised per bucket
here): when its optimum fills a count exactly, no float split can, so it may top a count by
CONTINUOUS_REL (1e-12) relative, and no more.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from melange.core import GpuType, Plan, Profile, SolveOptions, Workload
from melange.optimizer.milp import MIN_MAX_RATE, ceilings

CONTINUOUS_REL = 1e-12  # the same figure as search.CONTINUOUS_REL, kept here so the check stands alone
TOL = 1e-6  # float shares: how far from a slice or from summing to 1 they may print


def plan_violations(plan: Plan, workload: Workload, gpus: list[GpuType], profiles: dict[str, Profile],
                    options: SolveOptions = SolveOptions()) -> list[str]:
    """Every constraint the plan breaks, as readable lines (empty list = the plan holds)."""
    problems: list[str] = []
    rates = workload.bucket_rates() * (1.0 + options.headroom)
    shape = workload.grid.shape
    names = [g.name for g in gpus]
    unknown = sorted(set(plan.counts) - set(names))
    if unknown:
        problems.append(f"plan names unknown GPU types: {', '.join(unknown)}")
    share = {n: np.asarray(plan.share.get(n, np.zeros(shape)), dtype=float) for n in names}
    total_share = sum(share.values(), np.zeros(shape))
    sliced = options.slice_factor != "continuous"
    S = int(options.slice_factor) if sliced else 1
    for i, j in np.argwhere(rates > 0):
        if abs(total_share[i, j] - 1.0) > TOL:
            problems.append(f"bucket ({i},{j}): shares sum to {total_share[i, j]:.9g}, not 1")
        elif sliced and sum(round(share[n][i, j] * S) for n in names) != S:
            problems.append(f"bucket ({i},{j}): slices do not add up to {S}")
    if sliced:
        for n in names:
            if np.any(np.abs(share[n] * S - np.round(share[n] * S)) > TOL):
                problems.append(f"{n}: shares are not multiples of 1/{S}")

    def exact_share(n: str, i: int, j: int) -> Fraction:
        if sliced:
            return Fraction(round(share[n][i, j] * S), S)
        row = sum((Fraction(float(share[h][i, j])) for h in names), Fraction(0))
        return Fraction(float(share[n][i, j])) / row if row else Fraction(0)

    ceiling = ceilings(gpus, options)
    for k, g in enumerate(gpus):
        count = plan.counts.get(g.name, 0)
        if np.any(share[g.name] < 0):
            problems.append(f"{g.name}: negative share")
        max_rate = np.asarray(profiles[g.name].max_rate, dtype=float)
        cap = np.where(max_rate >= MIN_MAX_RATE, max_rate, 0.0) * ceiling[k]
        used = (share[g.name] > 0) & (rates > 0)
        if np.any(used & (cap <= 0)):
            problems.append(f"{g.name}: given traffic of a bucket it cannot serve")
        load = sum((Fraction(float(rates[i, j])) * exact_share(g.name, i, j) / Fraction(float(cap[i, j]))
                    for i, j in np.argwhere(used & (cap > 0))), Fraction(0))
        if load > count * (1 if sliced else 1 + Fraction(CONTINUOUS_REL)):
            problems.append(f"{g.name}: load {float(load):.12g} instances exceeds count {count}"
                            f"{' (by ' + format(float(load - count), '.3g') + ')' if load < count + 1 else ''}")
        if count < g.min_count:
            problems.append(f"{g.name}: count {count} below min_count {g.min_count}")
        if g.max_count is not None and count > g.max_count:
            problems.append(f"{g.name}: count {count} above max_count {g.max_count}")
    cost = sum(g.cost * plan.counts.get(g.name, 0) for g in gpus)
    if abs(cost - plan.cost) > TOL * max(1.0, cost):
        problems.append(f"cost {plan.cost:.6g} does not match counts x prices {cost:.6g}")
    return problems
