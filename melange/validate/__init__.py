"""Plans proven in simulation before anyone buys capacity.

- `loop.py`: solve → simulate → tighten → re-solve until a plan holds on fresh traffic
  (`plan_and_validate` -> `PlanReport`);
- `check.py`: one run judged by the acceptance rule, confirmation over fresh seeds, the
  per-bucket floor, the warm-up on top of the counted traffic;
- `baselines.py`: the fewest instances of each single GPU type that hold, and the saving
  (`validated_baselines` -> {gpu: `BaselineResult`});
- `capacity.py`: capacity factors that make the solver's counts agree with the fleet, both ways;
- `cheapest.py`: the answer, the cheapest plan that held among the calibrated mix and every
  single type (`plan_cheapest` -> `PlanReport`);
- `store.py`: the `plan -o DIR` directory (inputs hash, durable rounds log, resume).

Every function takes plain, picklable inputs (a Scenario and numbers), reports through optional
callbacks and never prints, so studies can call them from worker processes.
"""

from melange.validate.baselines import (
    BaselineResult,
    plan_document,
    saving,
    single_type_plan,
    trim_plan,
    validated_baselines,
)
from melange.validate.cheapest import plan_cheapest
from melange.validate.check import (
    BUCKET_MIN_REQUESTS,
    Confirmation,
    RunCheck,
    RunSettings,
    confirm,
    run_check,
    run_settings,
)
from melange.validate.loop import (
    PlanReport,
    Round,
    plan_and_validate,
    tighten,
    untested_gpus,
    why_not_validated,
)

__all__ = [
    "BUCKET_MIN_REQUESTS",
    "BaselineResult",
    "Confirmation",
    "PlanReport",
    "Round",
    "RunCheck",
    "RunSettings",
    "confirm",
    "plan_and_validate",
    "plan_cheapest",
    "plan_document",
    "run_check",
    "run_settings",
    "saving",
    "single_type_plan",
    "tighten",
    "trim_plan",
    "untested_gpus",
    "validated_baselines",
    "why_not_validated",
]
