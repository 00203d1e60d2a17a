"""The answer `melange plan` gives: the cheapest plan that held among every candidate it examined.

1. **Each GPU type alone**: its validated baseline, the fewest instances that hold the whole
   traffic (`baselines.validated_baselines`).
2. **Capacity calibration** (`capacity.calibrate`), starting from the baselines' factors: the
   profiles scaled so that the solver's count of each type agrees with the fleet on the share
   of traffic the plan sends it, loosened or tightened.
3. **The validation loop** (`loop.plan_and_validate`) on the calibrated profiles: solve,
   simulate the whole fleet, tighten and re-solve until a plan holds on fresh seeds.
4. **Trim**: the held mix with, per type, the fewest instances that keep it holding (the
   baselines' own search, the other types fixed).
5. **The answer**: the cheapest of the mix (trimmed) and the single-type baselines that held, so
   it is never costlier than one GPU type.
"""

from __future__ import annotations

from collections.abc import Callable
from copy import copy

from melange.scenario import Scenario
from melange.validate.baselines import (
    BaselineResult,
    confirmation_seeds,
    single_type_plan,
    trim_plan,
    validated_baselines,
)
from melange.validate.capacity import Calibration, Checker, OnCheck, baseline_factors, calibrate, scaled
from melange.validate.check import Confirmation, run_settings
from melange.validate.loop import PlanReport, Round, plan_and_validate, why_not_validated


def calibrated(sc: Scenario, cal: Calibration) -> Scenario:
    """The scenario with its profiles scaled by the calibration's capacity factors."""
    out = copy(sc)
    out.profiles = scaled(sc.profiles, cal.factors)
    return out


def plan_cheapest(sc: Scenario, *, max_rounds: int = 5, requests: int | None = None,
                  duration_s: float | None = None, seed: int | None = None, confirm_runs: int = 2,
                  resume: list[dict] | None = None, known: dict[tuple[str, int], Confirmation] | None = None,
                  on_round: Callable[[Round], None] | None = None, on_check: OnCheck | None = None,
                  progress: Callable[[str], None] | None = None, workers: int = 1,
                  calibrate_capacity: bool = True) -> PlanReport:
    """The steps of the module docstring; a PlanReport whose `best` is the answer (`choice`: 'mix'
    or the GPU type), with the baselines (`singles`), the calibration and the trim.

    `resume`/`known`: rounds and checks a previous run of the same inputs finished; `on_round`
    and `on_check` see new ones as they finish (a durable log)."""
    if why_not_validated(sc):
        return plan_and_validate(sc, max_rounds=max_rounds, seed=seed, on_round=on_round)
    tuning = sc.simulation.seed if seed is None else seed
    opts = {"requests": requests, "duration_s": duration_s, "seed": tuning, "confirm_runs": confirm_runs}
    known = dict(known or {})
    singles = validated_baselines(sc, known=known, on_check=_keep(known, on_check), progress=progress,
                                  workers=workers, **opts)
    cal = Calibration({})
    if calibrate_capacity:
        checker = Checker(run_settings(sc, requests=requests, duration_s=duration_s),
                          confirmation_seeds(tuning, confirm_runs), known, on_check, progress, workers)
        cal = calibrate(sc, checker, baseline_factors(sc, singles), progress=progress)
    report = plan_and_validate(calibrated(sc, cal), max_rounds=max_rounds, resume=resume, workers=workers,
                               on_round=on_round, progress=progress, **opts)
    report.calibration, report.singles = cal, singles
    if report.best is not None:
        plan, conf, tried = trim_plan(sc, report.best, progress=progress, **opts)
        report.trim = {"from_cost": report.best.cost, "tried": tried}
        if conf is not None:
            report.best, report.validation = plan, conf
    choose(sc, report, singles)
    return report


def _keep(known: dict, on_check: OnCheck | None) -> OnCheck:
    """Record each new check in `known` (later steps reuse it) and pass it on."""
    def log(label: str, n: int, conf: Confirmation) -> None:
        known[(label, n)] = conf
        if on_check:
            on_check(label, n, conf)
    return log


def choose(sc: Scenario, report: PlanReport, singles: dict[str, BaselineResult]) -> None:
    """Make the report's answer the cheapest that held: the mix, or a single type that held for less."""
    held = [b for b in singles.values() if b.count is not None]
    cheapest = min(held, key=lambda b: b.cost, default=None)
    report.choice = "mix" if report.best is not None else None
    if cheapest is not None and (report.best is None or cheapest.cost < report.best.cost - 1e-9):
        report.mix = report.best
        report.best = single_type_plan(sc, cheapest.gpu, cheapest.count)
        report.validation, report.choice = cheapest.confirmation, cheapest.gpu
