"""Test-only: the seed's formulation (one binary per slice and GPU type), written on python-mip.

Kept to prove that our counting formulation reaches the same optimum, and to time both.
"""

from __future__ import annotations

import mip

from melange.optimizer import Problem
from melange.optimizer.backend import new_model


def build_per_slice(p: Problem, slice_factor: int, backend: str = "highs"):
    """y[s,g] = 1 when slice s goes to type g; load of type g's slices <= n[g]."""
    m = new_model(backend, "per_slice")
    S, G = slice_factor, range(len(p.gpus))
    slices = [(b, k) for b in range(len(p.buckets)) for k in range(S)]
    n = [m.add_var(f"n_{g}", var_type=mip.INTEGER, lb=p.gpus[g].min_count,
                   ub=p.gpus[g].max_count if p.gpus[g].max_count is not None else mip.INF) for g in G]
    y = {(s, g): m.add_var(f"y_{s}_{g}", var_type=mip.BINARY)
         for s, (b, _) in enumerate(slices) for g in G if p.cap[b, g] > 0}
    m.objective = mip.minimize(mip.xsum(p.gpus[g].cost * n[g] for g in G))
    for s in range(len(slices)):
        m += mip.xsum(y[s, g] for g in G if (s, g) in y) == 1, f"assign_{s}"
    for g in G:
        m += mip.xsum((p.rate[slices[s][0]] / S) / p.cap[slices[s][0], g] * y[s, g]
                      for s in range(len(slices)) if (s, g) in y) <= n[g], f"load_{g}"
    return m, n, y


def per_slice_cost(p: Problem, slice_factor: int, backend: str = "highs", time_limit: float = 120) -> float:
    """Optimal cost of the per-slice model (raises if not solved to optimality)."""
    m, _, _ = build_per_slice(p, slice_factor, backend)
    status = m.optimize(max_seconds=time_limit)
    if status != mip.OptimizationStatus.OPTIMAL:
        raise RuntimeError(f"per-slice model not solved: {status}")
    return float(m.objective_value)
