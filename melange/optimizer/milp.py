"""Mélange's cost-minimising allocation as a mixed-integer program (python-mip).

Sets and parameters (DESIGN.md, "Optimizer"):
    B        buckets with traffic;  G  GPU types
    r[b]     rate of bucket b, req/s, times (1 + headroom)
    cap[b,g] max_rate[b,g] x utilisation ceiling of g; 0 = g cannot serve b
    S        slice factor: each bucket's rate is cut into S equal slices
    c[g]     $/h of one instance of g
Variables:
    n[g]     instances of g, integer in [min_count, max_count]
    x[b,g]   slices of b placed on g, integer in 0..S (continuous share in [0, 1] for the limit)
Model:
    min  sum_g c[g] n[g]
    s.t. sum_g x[b,g] = S                                 for every bucket b   (all slices placed)
         sum_b (r[b] / S) / cap[b,g] · x[b,g] <= n[g]     for every type g     (load fits)

The seed's model has one binary per slice and type; slices of a bucket are interchangeable, so
counting them gives the same optimum with |B|·|G| integers and no symmetry.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import mip
import numpy as np

from melange.core import GpuType, MelangeError, Plan, Profile, SolveOptions, Workload
from melange.optimizer.backend import new_model


@dataclass(frozen=True)
class Problem:
    """The optimizer's input, flattened: buckets with traffic x GPU types."""

    buckets: list[tuple[int, int]]  # grid index of each bucket with traffic
    rate: np.ndarray  # (B,) req/s per bucket, headroom included
    cap: np.ndarray  # (B, G) planned max req/s per instance; 0 = cannot serve
    gpus: list[GpuType]
    shape: tuple[int, int]  # grid shape, to lay shares back out

    @property
    def cost(self) -> np.ndarray:
        """$/h per instance of each type."""
        return np.array([g.cost for g in self.gpus])


def make_problem(workload: Workload, gpus: list[GpuType], profiles: dict[str, Profile],
                 options: SolveOptions) -> Problem:
    """Flatten a workload, its GPU types and their profiles into a Problem."""
    missing = [g.name for g in gpus if g.name not in profiles]
    if missing:
        raise MelangeError(f"gpus[{missing[0]}].profile: no max-rate profile for this GPU type")
    rates = workload.bucket_rates() * (1.0 + options.headroom)
    buckets = [tuple(int(v) for v in ij) for ij in np.argwhere(rates > 0)]
    ceiling = np.array([g.utilization if g.utilization is not None else options.utilization for g in gpus])
    cap = np.array([[profiles[g.name].max_rate[b] for g in gpus] for b in buckets]).reshape(len(buckets), len(gpus))
    return Problem(buckets, np.array([rates[b] for b in buckets]), cap * ceiling, list(gpus),
                   workload.grid.shape)


def check_servable(problem: Problem, grid_label=None) -> None:
    """Raise naming the first bucket that no available GPU type can serve."""
    available = np.array([g.max_count != 0 for g in problem.gpus])
    for k, b in enumerate(problem.buckets):
        if not np.any((problem.cap[k] > 0) & available):
            where = grid_label(*b) if grid_label else f"bucket {b}"
            blocked = [g.name for g, c in zip(problem.gpus, problem.cap[k]) if c > 0]
            why = (f"only {', '.join(blocked)} could, and max_count is 0" if blocked
                   else "every profile has 0 there")
            share = problem.rate[k] / problem.rate.sum()
            raise MelangeError(f"infeasible: no GPU type can serve {where}, {share:.3%} of traffic ({why})")


def build_model(p: Problem, slice_factor: int | str, backend: str = "highs"):
    """The MILP of the module docstring; returns (model, n, x)."""
    m = new_model(backend)
    G, B = range(len(p.gpus)), range(len(p.buckets))
    continuous = slice_factor == "continuous"
    S = 1 if continuous else int(slice_factor)

    n = [m.add_var(f"n_{p.gpus[g].name}", var_type=mip.INTEGER, lb=p.gpus[g].min_count,
                   ub=p.gpus[g].max_count if p.gpus[g].max_count is not None else mip.INF) for g in G]
    x = {(b, g): m.add_var(f"x_{b}_{g}", var_type=mip.CONTINUOUS if continuous else mip.INTEGER, lb=0, ub=S)
         for b in B for g in G if p.cap[b, g] > 0}

    m.objective = mip.minimize(mip.xsum(p.gpus[g].cost * n[g] for g in G))
    for b in B:
        m += mip.xsum(x[b, g] for g in G if (b, g) in x) == S, f"place_{b}"
    for g in G:
        m += mip.xsum((p.rate[b] / S) / p.cap[b, g] * x[b, g] for b in B if (b, g) in x) <= n[g], f"load_{g}"
    return m, n, x


def _status(status: mip.OptimizationStatus) -> str:
    return {mip.OptimizationStatus.OPTIMAL: "optimal",
            mip.OptimizationStatus.FEASIBLE: "feasible",
            mip.OptimizationStatus.INFEASIBLE: "infeasible",
            mip.OptimizationStatus.INT_INFEASIBLE: "infeasible"}.get(status, status.name.lower())


def solve_problem(p: Problem, options: SolveOptions) -> Plan:
    """Solve a Problem; raise MelangeError (naming the cause) when there is no plan."""
    start = time.perf_counter()
    names = [g.name for g in p.gpus]
    if not p.buckets:  # no traffic: the plan is the minimum counts
        counts = {g.name: g.min_count for g in p.gpus}
        return Plan(counts, {g: np.zeros(p.shape) for g in names}, float(sum(g.cost * g.min_count for g in p.gpus)),
                    "optimal", 0.0, 0.0, 0.0, options.slice_factor)
    m, n, x = build_model(p, options.slice_factor, options.backend)
    status = m.optimize(max_seconds=options.time_limit_s)
    elapsed = time.perf_counter() - start
    if status not in (mip.OptimizationStatus.OPTIMAL, mip.OptimizationStatus.FEASIBLE):
        if status in (mip.OptimizationStatus.INFEASIBLE, mip.OptimizationStatus.INT_INFEASIBLE):
            raise MelangeError(explain_infeasible(p, options))
        raise MelangeError(f"solver: no plan found within time_limit_s={options.time_limit_s:g} "
                           f"(status {_status(status)})")

    S = 1 if options.slice_factor == "continuous" else int(options.slice_factor)
    share = {g: np.zeros(p.shape) for g in names}
    for (b, g), var in x.items():
        v = var.x if options.slice_factor == "continuous" else round(var.x)
        share[names[g]][p.buckets[b]] = v / S
    counts = {names[g]: int(round(n[g].x)) for g in range(len(names))}
    cost = float(sum(p.gpus[g].cost * counts[names[g]] for g in range(len(names))))
    bound = float(m.objective_bound)
    gap = 0.0 if cost <= 0 else max(0.0, (cost - bound) / cost)
    return Plan(counts, share, cost, _status(status), bound, gap, elapsed, options.slice_factor)


def explain_infeasible(p: Problem, options: SolveOptions) -> str:
    """Name the availability caps that make the problem infeasible."""
    capped = [k for k, g in enumerate(p.gpus) if g.max_count is not None]

    def feasible_without(drop: set[int]) -> bool:
        gpus = [GpuType(g.name, g.cost, g.gpus, g.memory_gb, None if k in drop else g.max_count, g.min_count)
                for k, g in enumerate(p.gpus)]
        q = Problem(p.buckets, p.rate, p.cap, gpus, p.shape)
        m, _, _ = build_model(q, "continuous", options.backend)
        return m.optimize(max_seconds=options.time_limit_s) in (mip.OptimizationStatus.OPTIMAL,
                                                                 mip.OptimizationStatus.FEASIBLE)

    singles = [k for k in capped if feasible_without({k})]
    binding = singles or capped
    caps = ", ".join(f"{p.gpus[k].name} max_count={p.gpus[k].max_count}" for k in binding)
    if not feasible_without(set(capped)):
        return "infeasible: the workload cannot be placed even without availability caps"
    return f"infeasible: availability caps bind ({caps}); raise one of them or lower the rate"


def solve(workload: Workload, gpus: list[GpuType], profiles: dict[str, Profile],
          options: SolveOptions = SolveOptions()) -> Plan:
    """The cheapest plan that serves `workload` on `gpus` (Mélange's ILP)."""
    problem = make_problem(workload, gpus, profiles, options)
    check_servable(problem, workload.grid.label)
    return solve_problem(problem, options)


def baselines(workload: Workload, gpus: list[GpuType], profiles: dict[str, Profile],
              options: SolveOptions = SolveOptions()) -> dict[str, Plan | None]:
    """The same model restricted to each single GPU type; None where that type cannot serve it."""
    out: dict[str, Plan | None] = {}
    for gpu in gpus:
        try:
            out[gpu.name] = solve(workload, [gpu], {gpu.name: profiles[gpu.name]}, options)
        except MelangeError:
            out[gpu.name] = None
    return out
