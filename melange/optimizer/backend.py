"""Which MILP solver python-mip drives, and how to make one model for it.

HiGHS is the default: on random instances of the paper's size python-mip 2.0.0's bundled CBC
returned "optimal" plans that were not optimal (its root cuts cut off the optimum), while HiGHS
matched an independent formulation and a brute force every time (tests/test_exactness.py keeps
that cross-check). CBC stays available with its cuts off: then exact, but it can take minutes on
large instances where HiGHS takes about a second.
"""

from __future__ import annotations

import os

BACKENDS = ("highs", "cbc")
TOLERANCE = 1e-9  # feasibility and integrality, in instances


def _point_mip_at_highsbox() -> None:
    # python-mip first tries highspy's extension module, which on Linux often lacks the C API and
    # prints a warning before falling back; highsbox ships the plain shared library, so name it.
    if "PMIP_HIGHS_LIBRARY" in os.environ:
        return
    try:
        import highsbox
    except ImportError:
        return
    lib = os.path.join(highsbox.highs_dist_dir(), "lib", "libhighs.so")
    if os.path.isfile(lib):
        os.environ["PMIP_HIGHS_LIBRARY"] = lib


_point_mip_at_highsbox()

import mip


def new_model(backend: str, name: str = "melange") -> mip.Model:
    """An empty, silent minimisation model on the chosen backend."""
    solver = {"highs": mip.HIGHS, "cbc": mip.CBC}[backend]
    model = mip.Model(name=name, sense=mip.MINIMIZE, solver_name=solver)
    model.verbose = 0
    if backend == "cbc":
        # CBC's root cuts cut off the true optimum on about a third of paper-size instances
        # (benchmarks/solver.py counts it); without them it was exact on every instance we tried.
        model.cuts = 0
    # Exact optimum wanted: plans differ by cents per hour, so no relative-gap early stop.
    model.max_mip_gap = 1e-9
    model.max_mip_gap_abs = 1e-6
    return model


def set_tolerance(model: mip.Model, backend: str, tight: bool) -> None:
    """The solver's defaults (1e-6 integrality, 1e-7 rows), or TOLERANCE for knife edges.

    At the defaults a load of 2.0000001 got 2 instances; at 1e-9 knife edges down to ~1e-8 get
    the right count (exact.py repairs what is left), but HiGHS searched up to 3x longer on large
    grids, so search.py goes tight only when the exact check had to repair a loose answer."""
    if backend == "highs":
        model.solver._set_double_option_value("mip_feasibility_tolerance", TOLERANCE if tight else 1e-6)
        model.solver._set_double_option_value("primal_feasibility_tolerance", TOLERANCE if tight else 1e-7)
        model.solver._set_string_option_value("presolve", "on")
    else:
        model.infeas_tol = TOLERANCE if tight else 1e-6
        model.integer_tol = TOLERANCE if tight else 1e-6


def optimize(model: mip.Model, max_seconds: float) -> mip.OptimizationStatus:
    """model.optimize, once more without presolve if HiGHS rejects its own knife-edge answer."""
    try:
        return model.optimize(max_seconds=max_seconds)
    except mip.InterfacingError:
        # A load 1e-6 above an integer: presolve accepts a row its postsolve check then rejects
        # ("MIP solver claims optimality, but with ... infeasibilities", "Unknown error").
        model.solver._set_string_option_value("presolve", "off")
        return model.optimize(max_seconds=max_seconds)


def set_coefficient(model: mip.Model, row: mip.Constr, var: mip.Var, value: float) -> None:
    """Change one matrix entry of a built HiGHS model in place (python-mip has no public call)."""
    model.solver._flush()
    model.solver._change_coef(row.idx, var.idx, value)


def favour_feasibility(model: mip.Model, backend: str) -> None:
    """More primal heuristics (HiGHS's mip_heuristic_effort 0.05 -> 0.3), for a model whose only
    question is whether a plan exists: on a hard 40x20 case the first plan came in 9 s, not 27."""
    if backend == "highs":
        model.solver._set_double_option_value("mip_heuristic_effort", 0.3)
