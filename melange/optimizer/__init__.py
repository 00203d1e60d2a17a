"""The MILP allocator (python-mip) and an independent plan checker."""

from melange.optimizer.check import plan_violations
from melange.optimizer.milp import (
    Problem,
    baselines,
    build_model,
    make_problem,
    solve,
    solve_problem,
)

__all__ = ["Problem", "baselines", "build_model", "make_problem", "plan_violations", "solve", "solve_problem"]
