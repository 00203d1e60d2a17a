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
    s.t. place_b:   sum_g x[b,g] = S                               (all slices placed)
         load_g:    sum_b (r[b] / S) / cap[b,g] · x[b,g] <= n[g]   (load fits; kept times S)
         open_b_g:  x[b,g] <= S · n[g]    where one slice's load is tiny (< OPEN_ROW_LOAD): a load
                    the solver's tolerance could round away still needs an instance, in integers

The seed's model has one binary per slice and type; slices of a bucket are interchangeable, so
counting them gives the same optimum with |B|·|G| integers and no symmetry. The solver's answer
is then checked and, if need be, repaired in exact arithmetic (exact.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import mip
import numpy as np

from melange.core import GpuType, MelangeError, Profile, SolveOptions, Workload
from melange.optimizer.backend import new_model

# Slices per bucket the solver represents exactly: one slice of 1/S keeps x <= S·n meaningful
# (n >= 1/S, far above the integrality tolerance) and the model small. "continuous" is the limit.
MAX_SLICE_FACTOR = 4096
# A profile cell below this (req/s per instance: under one request in 11 days) means "cannot
# serve": its loads would be numerically meaningless (1e-20 req/s crashed HiGHS).
MIN_MAX_RATE = 1e-6
# More instances than this is not a plan but a units mistake, and past the solver's exact range.
MAX_INSTANCES = 1e6
OPEN_ROW_LOAD = 1e-4  # one slice's load below this gets an open_b_g row (100x the integrality tolerance)


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

    def slice_load(self, S: int) -> np.ndarray:
        """(B, G) instances one slice of bucket b needs on type g (0 where g cannot serve b)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.cap > 0, self.rate[:, None] / S / np.where(self.cap > 0, self.cap, 1.0), 0.0)


def ceilings(gpus: list[GpuType], options: SolveOptions) -> np.ndarray:
    """Utilisation ceiling of each type: the per-type one, unless options.utilization_override."""
    if options.utilization_override:
        return np.full(len(gpus), options.utilization)
    return np.array([g.utilization if g.utilization is not None else options.utilization for g in gpus])


def check_slice_factor(slice_factor: int | str) -> None:
    """Refuse a slice factor the solver cannot represent exactly (one line naming the option)."""
    if slice_factor == "continuous":
        return
    if not isinstance(slice_factor, (int, np.integer)) or not 1 <= slice_factor <= MAX_SLICE_FACTOR:
        raise MelangeError(f"solver.slice_factor (--slice-factor): {slice_factor!r} must be an integer in "
                           f"1..{MAX_SLICE_FACTOR}, or 'continuous' for the limit")


def make_problem(workload: Workload, gpus: list[GpuType], profiles: dict[str, Profile],
                 options: SolveOptions) -> Problem:
    """Flatten a workload, its GPU types and their profiles into a Problem."""
    check_slice_factor(options.slice_factor)
    missing = [g.name for g in gpus if g.name not in profiles]
    if missing:
        raise MelangeError(f"gpus[{missing[0]}].profile: no max-rate profile for this GPU type")
    rates = workload.bucket_rates() * (1.0 + options.headroom)
    buckets = [tuple(int(v) for v in ij) for ij in np.argwhere(rates > 0)]
    table = np.array([[profiles[g.name].max_rate[b] for g in gpus] for b in buckets]).reshape(len(buckets), len(gpus))
    table = np.where(table >= MIN_MAX_RATE, table, 0.0)
    p = Problem(buckets, np.array([rates[b] for b in buckets]), table * ceilings(gpus, options), list(gpus),
                workload.grid.shape)
    least = p.slice_load(1)
    least = np.where(least > 0, least, np.inf).min(axis=1) if p.buckets else np.zeros(0)
    if np.sum(least[np.isfinite(least)]) > MAX_INSTANCES:
        raise MelangeError(f"workload.rate: {workload.rate:g} req/s needs over {MAX_INSTANCES:,.0f} instances "
                           "of any GPU type; check the rate and the profile's units (req/s)")
    return p


def check_servable(problem: Problem, grid_label=None) -> None:
    """Raise naming the first bucket that no available GPU type can serve."""
    available = np.array([g.max_count != 0 for g in problem.gpus])
    for k, b in enumerate(problem.buckets):
        if not np.any((problem.cap[k] > 0) & available):
            where = grid_label(*b) if grid_label else f"bucket {b}"
            blocked = [g.name for g, c in zip(problem.gpus, problem.cap[k]) if c > 0]
            why = (f"only {', '.join(blocked)} could, and max_count is 0" if blocked
                   else f"every profile is 0 (or below {MIN_MAX_RATE:g} req/s) there")
            share = problem.rate[k] / problem.rate.sum()
            raise MelangeError(f"infeasible: no GPU type can serve {where}, {share:.3%} of traffic ({why})")


def build_model(p: Problem, slice_factor: int | str, backend: str = "highs", open_rows: np.ndarray | None = None):
    """The MILP of the module docstring; returns (model, n, x).

    The load row is kept multiplied by S (whole-bucket loads on x, -S on n) so that a re-used
    model (many.py) changes a rate scale or slice factor in G coefficients, not B·G.
    `open_rows` (B, G) picks the open_b_g rows; default: where one slice's load < OPEN_ROW_LOAD."""
    m = new_model(backend)
    n, x = add_block(m, p, slice_factor, open_rows)
    m.objective = mip.minimize(mip.xsum(p.gpus[g].cost * n[g] for g in range(len(p.gpus))))
    return m, n, x


def add_block(m: mip.Model, p: Problem, slice_factor: int | str, open_rows: np.ndarray | None = None,
              prefix: str = "") -> tuple[list, dict]:
    """Add p's variables and rows (all but the objective) to `m`, names prefixed; returns (n, x).
    Several blocks in one model share rows added by the caller (a fleet's caps, optimizer/joint.py)."""
    G, B = range(len(p.gpus)), range(len(p.buckets))
    continuous = slice_factor == "continuous"
    S = 1 if continuous else int(slice_factor)
    bucket_load = p.slice_load(1)
    if open_rows is None:
        open_rows = bucket_load / S < OPEN_ROW_LOAD

    n = [m.add_var(f"{prefix}n_{g}", var_type=mip.INTEGER, lb=p.gpus[g].min_count,
                   ub=p.gpus[g].max_count if p.gpus[g].max_count is not None else mip.INF) for g in G]
    x = {(b, g): m.add_var(f"{prefix}x_{b}_{g}", var_type=mip.CONTINUOUS if continuous else mip.INTEGER, lb=0, ub=S)
         for b in B for g in G if p.cap[b, g] > 0}
    for b in B:
        m += mip.xsum(x[b, g] for g in G if (b, g) in x) == S, f"{prefix}place_{b}"
    for g in G:
        m += mip.xsum(bucket_load[b, g] * x[b, g] for b in B if (b, g) in x) - S * n[g] <= 0, f"{prefix}load_{g}"
    for (b, g), var in x.items():
        if open_rows[b, g]:
            m += var - S * n[g] <= 0, f"{prefix}open_{b}_{g}"
    return n, x
