"""Many solves on one built model: sweeps over rates and slice factors, hourly plans.

A rate scale λ (rate / reference rate) and a slice factor S enter the model only as
    load_g:   sum_b (r_ref[b] / cap[b,g]) · x[b,g] - (S / λ) · n[g] <= 0
    open_b_g: x[b,g] - S · n[g] <= 0,    place_b: sum_g x[b,g] = S,    0 <= x[b,g] <= S
so one HiGHS model per kind (continuous, sliced) is built once and re-parameterised in place.
The continuous bound is solved once per rate; the plan at slice factor k starts the search at
any multiple of k (its slices, multiplied, are a plan there). Counts and "optimal" are decided
exactly on each point's own data, as in search.py.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace

import mip
import numpy as np

from melange.core import GpuType, MelangeError, Plan, Profile, SolveOptions, Workload
from melange.optimizer.backend import set_coefficient
from melange.optimizer.milp import OPEN_ROW_LOAD, build_model, check_servable, check_slice_factor, make_problem
from melange.optimizer.search import Candidate, explain_infeasible, run_model, solve_scaled


class ReusedModels:
    """The continuous and sliced models of one workload shape, re-parameterised per solve."""

    def __init__(self, p_ref, backend: str, open_rows: np.ndarray, first_S: int):
        self.backend, self.scale = backend, 1.0
        self.kinds = {}
        for kind in ("continuous", first_S):
            m, n, x = build_model(p_ref, kind, backend, open_rows)
            floor = None
            if kind != "continuous":
                floor = m.add_constr(mip.xsum(c * v for c, v in zip(p_ref.cost, n)) >= 0, "floor")
            self.kinds["continuous" if kind == "continuous" else "sliced"] = (m, n, x, floor)
        self.S = {"continuous": 1, "sliced": first_S}
        self.rows = {}  # kind -> (load rows, open rows with their n, place rows), looked up once
        for kind, (m, n, x, _) in self.kinds.items():
            opens = [(m.constr_by_name(f"open_{b}_{g}"), n[g]) for (b, g) in x if open_rows[b, g]]
            self.rows[kind] = ([m.constr_by_name(f"load_{g}") for g in range(len(n))], opens,
                               [m.constr_by_name(f"place_{b}") for b in range(len(p_ref.buckets))])

    def get(self, S: int | str, scale: float):
        """The model for slice factor S at rate scale λ, its coefficients set."""
        kind = "continuous" if S == "continuous" else "sliced"
        m, n, x, floor = self.kinds[kind]
        s = 1 if S == "continuous" else int(S)
        loads, opens, places = self.rows[kind]
        for row, var in zip(loads, n):
            set_coefficient(m, row, var, -s / scale)
        if s != self.S[kind]:
            for var in x.values():
                var.ub = s
            for row, var in opens:
                set_coefficient(m, row, var, -s)
            for row in places:
                row.rhs = s
            self.S[kind] = s
        return m, n, x, floor


def solve_many(workload: Workload, gpus: list[GpuType], profiles: dict[str, Profile], rates: list[float],
               slice_factors: list[int | str], options: SolveOptions = SolveOptions()) -> list[Plan]:
    """One plan per (rate, slice factor), rates outer, in the order given; models built once.
    Raises MelangeError naming the rate and slice factor of the first point with no plan."""
    for S in slice_factors:
        check_slice_factor(S)
    if not rates or not slice_factors:
        return []
    if not all(r > 0 and math.isfinite(r) for r in rates):
        raise MelangeError("rates: every rate must be a finite number > 0")
    ref = make_problem(replace(workload, rate=max(rates)), gpus, profiles, options)
    check_servable(ref, workload.grid.label)
    sliced = sorted({int(S) for S in slice_factors if S != "continuous"})
    open_rows = ref.slice_load(1) * (min(rates) / max(rates)) / max(sliced or [1]) < OPEN_ROW_LOAD
    models = ReusedModels(ref, options.backend, open_rows, (sliced or [1])[0]) if options.backend == "highs" else None
    plans: dict[tuple[float, int | str], Plan] = {}
    for rate in rates:
        p = make_problem(replace(workload, rate=rate), gpus, profiles, options)
        scale = rate / max(rates)
        get = (lambda S, scale=scale: models.get(S, scale)) if models else None
        start = time.perf_counter()
        m, n, x, _ = get("continuous") if get else (*build_model(p, "continuous", options.backend), None)
        cont = run_model(p, m, n, x, "continuous", options.time_limit_s, options.backend)
        if cont.best is None:
            why = (explain_infeasible(p, options.backend, options.time_limit_s) if cont.status in
                   (mip.OptimizationStatus.INFEASIBLE, mip.OptimizationStatus.INT_INFEASIBLE)
                   else f"no plan within time_limit_s={options.time_limit_s:g}")
            raise MelangeError(f"rate {rate:g} req/s: {why}")
        cont_time = time.perf_counter() - start
        previous: tuple[int, Plan] | None = None
        for S in ["continuous"] * ("continuous" in slice_factors) + sliced:
            if (rate, S) in plans:
                continue
            incumbent = None
            if previous and S % previous[0] == 0:
                k, plan = previous
                incumbent = Candidate(slices_of(p, plan, k) * (S // k), np.array([plan.counts[g.name] for g in gpus]))
            try:
                plan = solve_scaled(p, S, options.time_limit_s, options.backend, incumbent, get, cont)
            except MelangeError as exc:
                raise MelangeError(f"rate {rate:g} req/s, slice factor {S}: {exc}") from None
            plan.solve_time_s += cont_time if S == ([*slice_factors, *sliced])[0] else 0.0
            plans[rate, S] = plan
            if S != "continuous":
                previous = (S, plan)
    return [plans[rate, S if S == "continuous" else int(S)] for rate in rates for S in slice_factors]


def slices_of(p, plan: Plan, S: int) -> np.ndarray:
    """(B, G) whole slices of a plan at slice factor S."""
    return np.array([[round(plan.share[g.name][ij] * S) for g in p.gpus] for ij in p.buckets], dtype=float)
