"""Check a plan against its own constraints without any solver: plain numpy arithmetic."""

from __future__ import annotations

import numpy as np

from melange.core import GpuType, Plan, Profile, SolveOptions, Workload

TOL = 1e-6


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
    total_share = sum((np.asarray(plan.share.get(n, np.zeros(shape))) for n in names), np.zeros(shape))
    for i, j in np.argwhere(rates > 0):
        if abs(total_share[i, j] - 1.0) > TOL:
            problems.append(f"bucket ({i},{j}): shares sum to {total_share[i, j]:.9g}, not 1")
    if options.slice_factor != "continuous":
        S = int(options.slice_factor)
        for n in names:
            off = np.abs(plan.share.get(n, np.zeros(shape)) * S - np.round(plan.share.get(n, np.zeros(shape)) * S))
            if np.any(off > TOL):
                problems.append(f"{n}: shares are not multiples of 1/{S}")
    for g in gpus:
        count = plan.counts.get(g.name, 0)
        share = np.asarray(plan.share.get(g.name, np.zeros(shape)))
        if np.any(share < -TOL):
            problems.append(f"{g.name}: negative share")
        max_rate = profiles[g.name].max_rate
        ceiling = g.utilization if g.utilization is not None else options.utilization
        used = share * rates > 0
        if np.any(used & (max_rate <= 0)):
            problems.append(f"{g.name}: given traffic of a bucket it cannot serve")
        load = float(np.sum(np.where(used, share * rates / np.where(max_rate > 0, max_rate * ceiling, 1.0), 0.0)))
        if load > count * (1 + TOL) + TOL:
            problems.append(f"{g.name}: load {load:.6g} instances exceeds count {count}")
        if count < g.min_count:
            problems.append(f"{g.name}: count {count} below min_count {g.min_count}")
        if g.max_count is not None and count > g.max_count:
            problems.append(f"{g.name}: count {count} above max_count {g.max_count}")
    cost = sum(g.cost * plan.counts.get(g.name, 0) for g in gpus)
    if abs(cost - plan.cost) > TOL * max(1.0, cost):
        problems.append(f"cost {plan.cost:.6g} does not match counts x prices {cost:.6g}")
    return problems
