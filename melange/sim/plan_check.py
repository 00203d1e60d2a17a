"""Checks that a plan can be simulated against a workload: one MelangeError line per problem."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from melange.core import MelangeError, Plan, Workload

SHARE_TOLERANCE = 1e-6
MAX_INSTANCES = 10_000  # instances one simulation builds (each holds its own state and events)
MAX_REQUESTS = 5_000_000  # requests one simulation draws up front (~1 kB each, records included)


def check_size(workload: Workload, requests: int | None, duration_s: float | None) -> None:
    """Refuse, before allocating, a run whose requests cannot fit in memory."""
    if requests is not None and requests > MAX_REQUESTS:
        raise MelangeError(f"requests: {requests:,} is above the limit of {MAX_REQUESTS:,} per simulation")
    if requests is None and duration_s is not None and workload.rate * duration_s > MAX_REQUESTS:
        raise MelangeError(f"duration: {duration_s:g} s at {workload.rate:g} req/s is "
                           f"{workload.rate * duration_s:.3g} requests, above the limit of {MAX_REQUESTS:,}")


def check_plan(plan: Plan, workload: Workload, names: Iterable[str],
               simulable: Iterable[str] | None = None) -> None:
    """Raise MelangeError unless every GPU of `plan` is in `names`, every GPU with instances is in
    `simulable` (those with a step-time model; default `names`), and the shares have the grid's
    shape, are >= 0, go only to GPUs with instances and sum to 1 in every non-empty bucket."""
    names = list(names)
    simulable = set(names if simulable is None else simulable)
    known = ", ".join(names) or "none"
    for gpu in list(plan.counts) + [g for g in plan.share if g not in plan.counts]:
        if gpu not in names:
            raise MelangeError(f"plan: GPU '{gpu}' is not in the scenario (known: {known})")
    for gpu, n in plan.counts.items():
        if n < 0:
            raise MelangeError(f"plan.counts.{gpu}: must be >= 0, got {n}")
        if n > 0 and gpu not in simulable:
            raise MelangeError(f"plan: GPU '{gpu}' has no step_time model in the scenario, "
                               "cannot simulate it")
    if sum(plan.counts.values()) > MAX_INSTANCES:
        raise MelangeError(f"plan.counts: {sum(plan.counts.values()):,} instances, above the simulator's "
                           f"limit of {MAX_INSTANCES:,}")
    if sum(plan.counts.values()) == 0:
        raise MelangeError("plan.counts: no instances to simulate")
    shape = workload.grid.shape
    total = np.zeros(shape)
    for gpu, share in plan.share.items():
        share = np.asarray(share, dtype=float)
        if share.shape != shape:
            got = "x".join(map(str, share.shape)) or "scalar"
            raise MelangeError(f"plan.share.{gpu}: shape {got} does not match the "
                               f"{shape[0]}x{shape[1]} grid")
        if not np.all(np.isfinite(share)) or np.any(share < 0):
            raise MelangeError(f"plan.share.{gpu}: shares must be finite and >= 0")
        if plan.counts.get(gpu, 0) == 0 and np.any(share > SHARE_TOLERANCE):
            raise MelangeError(f"plan.share.{gpu}: sends traffic to a GPU type with 0 instances")
        total += share
    busy = np.asarray(workload.distribution) > 0
    bad = busy & (np.abs(total - 1.0) > SHARE_TOLERANCE)
    if bad.any():
        i, j = (int(x) for x in np.argwhere(bad)[0])
        raise MelangeError(f"plan.share: shares for bucket ({i}, {j}) [{workload.grid.label(i, j)}] "
                           f"sum to {total[i, j]:.6g}, not 1")
