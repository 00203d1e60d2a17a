"""The horizon MILP split by window, with a proven bound: fast where the whole MILP is not.

Without minimum up-times, change caps or availability limits, windows are coupled only by the
cost of change (start-ups and drains), and the horizon MILP is T copies of Mélange's problem that
HiGHS's branch and bound multiplies together (48 windows: 1 % gap after 120 s). So:

1. **Each window alone**: Mélange's continuous-share optimum of window t (`optimizer.solve`, proven)
   gives its fleet n*_t and serving cost C*_t = W·c·n*_t.
2. **Candidates**: for window t, the fleets n*_s of nearby windows s (|s - t| <= `NEIGHBOURS`) that
   can serve t, and the union max(n*_t, n*_s); whether a fleet serves a window, and the split it
   routes with, come from one LP (`balance`: the split that minimises the busiest type's load).
3. **Shortest path**: dynamic programming over the candidates with the cost of change between
   them: the cheapest schedule that uses only candidate fleets (an upper bound, and the answer).
4. **Lower bound**: any schedule's serving cost in window t is some C_t >= C*_t, and starting
   instances costs at least (min start-up / W)·(C_t - C_{t-1})^+ (draining likewise), so the
   LP min Σ C_t + a·Σ(C_t - C_{t-1})^+ + b·Σ(C_{t-1} - C_t)^+ over C_t >= C*_t bounds the optimum.
   The gap between 3 and 4 is printed; when it is zero the schedule is proven optimal.
"""

from __future__ import annotations

from dataclasses import replace

import mip
import numpy as np

from melange.core import GpuType, MelangeError, Profile, SolveOptions, Workload
from melange.load import Load
from melange.optimizer import solve
from melange.optimizer.backend import new_model

NEIGHBOURS = 3  # windows each side whose fleets are tried as candidates
FITS = 1.0 + 1e-9  # a fleet serves a window when its busiest type is at most this loaded


def balance(load_bg: np.ndarray, counts: np.ndarray) -> tuple[float, np.ndarray]:
    """(z, split): the split of buckets over types (rows sum to 1) that minimises the busiest type's
    load ÷ its instances, z; `load_bg` (B, G) instances bucket b needs on g alone (inf: cannot)."""
    B, G = load_bg.shape
    m = new_model("highs", "balance")
    z = m.add_var(lb=0.0)
    y = {(b, g): m.add_var(lb=0.0, ub=1.0) for b in range(B) for g in range(G)
         if np.isfinite(load_bg[b, g]) and counts[g] > 0}
    for b in range(B):
        row = [y[b, g] for g in range(G) if (b, g) in y]
        if not row:
            return np.inf, np.zeros((B, G))
        m += mip.xsum(row) == 1
    for g in range(G):
        terms = [load_bg[b, g] * y[b, g] for b in range(B) if (b, g) in y]
        if terms:
            m += mip.xsum(terms) <= float(counts[g]) * z
    m.objective = mip.minimize(z)
    if m.optimize() != mip.OptimizationStatus.OPTIMAL:
        return np.inf, np.zeros((B, G))
    split = np.zeros((B, G))
    for (b, g), var in y.items():
        split[b, g] = max(var.x, 0.0)
    split /= np.maximum(split.sum(axis=1, keepdims=True), 1e-300)
    return float(z.x), split


def window_optimum(load: Load, t: int, gpus: list[GpuType], profiles: dict[str, Profile],
                   solve_opts: SolveOptions, scale: np.ndarray) -> tuple[np.ndarray, float]:
    """(counts, proven lower bound on $/h) of Mélange's continuous optimum for window t alone."""
    if load.rate[t] <= 0:
        return np.array([g.min_count for g in gpus]), float(sum(g.cost * g.min_count for g in gpus))
    scaled = {g.name: replace(profiles[g.name], max_rate=profiles[g.name].max_rate * scale[k])
              for k, g in enumerate(gpus)}
    work = Workload(load.grid, load.distribution[t], float(load.rate[t]))
    plan = solve(work, gpus, scaled, replace(solve_opts, slice_factor="continuous"))
    counts = np.array([plan.counts.get(g.name, 0) for g in gpus])
    bound = plan.bound if plan.bound is not None and np.isfinite(plan.bound) else plan.cost
    return counts, float(min(bound, plan.cost))


def bucket_loads(rates: np.ndarray, cap: np.ndarray, scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(busy bucket indices, (B, G) instances each needs on each type alone; inf where it cannot)."""
    busy = np.argwhere(rates > 0)
    c = cap[busy[:, 0], busy[:, 1]] * scale[None, :]
    with np.errstate(divide="ignore"):
        need = np.where(c > 0, rates[busy[:, 0], busy[:, 1]][:, None] / np.where(c > 0, c, 1.0), np.inf)
    return busy, need


def change_cost(a: np.ndarray, b: np.ndarray, cost: np.ndarray, startup: np.ndarray, drain_s: float) -> float:
    """$ to go from fleet a to fleet b: start-ups paid for the new instances, drains for the stopped."""
    up, down = np.maximum(b - a, 0), np.maximum(a - b, 0)
    return float(np.sum(cost * (up * startup + down * drain_s)) / 3600.0)


def lower_bound(serve: np.ndarray, start0: float, a: float, b: float, backend: str = "highs") -> float:
    """min Σ C_t + a·Σ(C_t - C_{t-1})^+ + b·Σ(C_{t-1} - C_t)^+ over C_t >= serve[t], C_{-1} = start0 ($)."""
    m = new_model(backend, "bound")
    C = [m.add_var(lb=float(s)) for s in serve]
    up = [m.add_var(lb=0.0) for _ in serve]
    down = [m.add_var(lb=0.0) for _ in serve]
    for t in range(len(serve)):
        prev = start0 if t == 0 else C[t - 1]
        m += C[t] - prev == up[t] - down[t]
    m.objective = mip.minimize(mip.xsum(C) + a * mip.xsum(up) + b * mip.xsum(down))
    m.optimize()
    return float(m.objective_value)


def decompose(load: Load, gpus: list[GpuType], profiles: dict[str, Profile], solve_opts: SolveOptions,
              cap: np.ndarray, scale: np.ndarray, startup: np.ndarray, drain_s: float,
              initial: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(counts (T, G), shares (T, n_in, n_out, G), proven lower bound $) by steps 1-4 above."""
    T, G, W = load.windows, len(gpus), load.window_s
    cost = np.array([g.cost for g in gpus])
    rates = load.rate[:, None, None] * load.distribution * (1.0 + solve_opts.headroom)
    best, bounds = [], []
    for t in range(T):
        counts, bound = window_optimum(load, t, gpus, profiles, solve_opts, scale[t])
        best.append(counts)
        bounds.append(bound)
    lo = np.array([g.min_count for g in gpus])
    hi = np.array([np.inf if g.max_count is None else g.max_count for g in gpus])
    candidates: list[list[tuple[np.ndarray, np.ndarray]]] = []
    for t in range(T):
        busy, need = bucket_loads(rates[t], cap, scale[t])
        seen, mine = set(), []
        near = range(max(0, t - NEIGHBOURS), min(T, t + NEIGHBOURS + 1))
        for fleet in [best[t]] + [best[s] for s in near] + [np.maximum(best[t], best[s]) for s in near]:
            key = tuple(int(v) for v in fleet)
            if key in seen or np.any(fleet < lo) or np.any(fleet > hi):
                continue
            seen.add(key)
            z, split = balance(need, fleet) if len(busy) else (0.0, np.zeros((0, G)))
            if z <= FITS:
                share = np.zeros((*load.grid.shape, G))
                share[busy[:, 0], busy[:, 1]] = split
                mine.append((np.array(key), share))
        if not mine:
            raise MelangeError(f"schedule: window {t}: its own optimum does not fit its load (numerical trouble)")
        candidates.append(mine)
    # Shortest path over the candidates (serving cost + cost of change).
    total = [np.array([W * float(cost @ n) / 3600.0 + change_cost(initial, n, cost, startup, drain_s)
                       for n, _ in candidates[0]])]
    back = []
    for t in range(1, T):
        here = candidates[t]
        step = np.array([[change_cost(p, n, cost, startup, drain_s) for n, _ in here] for p, _ in candidates[t - 1]])
        through = total[-1][:, None] + step
        back.append(np.argmin(through, axis=0))
        total.append(through.min(axis=0) + np.array([W * float(cost @ n) / 3600.0 for n, _ in here]))
    k = int(np.argmin(total[-1]))
    path = [k]
    for t in range(T - 1, 0, -1):
        k = int(back[t - 1][k])
        path.append(k)
    path.reverse()
    counts = np.array([candidates[t][k][0] for t, k in enumerate(path)], dtype=np.int64)
    shares = np.array([candidates[t][k][1] for t, k in enumerate(path)])
    serve = np.array(bounds) * W / 3600.0
    start0 = W * float(cost @ initial) / 3600.0
    bound = lower_bound(serve, start0, float(startup.min()) / W, drain_s / W)
    return counts, shares, bound
