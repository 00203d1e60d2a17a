"""Sensitivity studies: sweeps of a scenario over axis values, on a process pool or Ray."""

from melange.study.executor import Executor, LocalExecutor, RayExecutor, make_executor
from melange.study.point import evaluate_point, portable_document
from melange.study.sweep import Sweep, finished, prepare_profiles, run_sweep, tidy_table

__all__ = ["Executor", "LocalExecutor", "RayExecutor", "Sweep", "evaluate_point", "finished",
           "make_executor", "portable_document", "prepare_profiles", "run_sweep", "tidy_table"]
