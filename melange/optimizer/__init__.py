"""The MILP allocator (python-mip), exact capacity arithmetic and an independent plan checker."""

from melange.optimizer.check import plan_violations
from melange.optimizer.many import solve_many
from melange.optimizer.milp import Problem, build_model, make_problem
from melange.optimizer.search import baselines, solve, solve_problem

__all__ = ["Problem", "baselines", "build_model", "make_problem", "plan_violations", "solve", "solve_many",
           "solve_problem"]
