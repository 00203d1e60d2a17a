"""How a plan's verdict moves across the step model's uncertainty band.

Every roofline step model carries the relative 1-sigma band of its calibration (its GPU family's
fit to public kernel measurements combined with its engine preset's: catalog/calibration.yaml).
`plan_sensitivity` re-validates a plan with every step time scaled to the fast end (1 − u) and
the slow end (1 + u) of that band, on seeds no other step ran, and reports at each end whether
the plan still held and which buckets fell below the floor. A plan that fails at the slow end is
knife-edge: one band's error in the model is enough to break it.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

from melange.core import Plan
from melange.scenario import Scenario
from melange.validate.check import RunSettings, confirm

ENDS = (("fast", -1.0), ("slow", 1.0))


@dataclass(frozen=True)
class SensitivityEnd:
    """The plan re-validated at one end of the band."""

    end: str  # fast | slow
    scales: dict[str, float]  # per GPU type: the factor on its step times
    held: bool
    attainment: float | None
    reasons: list[str]

    def to_dict(self) -> dict:
        """JSON-ready."""
        return dataclasses.asdict(self)


def scaled(sc: Scenario, sign: float) -> tuple[Scenario, dict[str, float]]:
    """A copy of `sc` whose step models run at 1 + sign·u of their own band (models without a
    band, e.g. fitted to your measurements, are left as they are)."""
    out = copy.copy(sc)
    models, scales = {}, {}
    for name, m in sc.step_models.items():
        u = getattr(m, "uncertainty", 0.0)
        if u and dataclasses.is_dataclass(m):
            scales[name] = round(1 + sign * u, 4)
            m = dataclasses.replace(m, scale=m.scale * scales[name])
        models[name] = m
    out.step_models = models
    return out, scales


def plan_sensitivity(sc: Scenario, plan: Plan, seeds: list[int], settings: RunSettings, *,
                     workers: int = 1, progress=None) -> list[SensitivityEnd]:
    """`plan` confirmed on `seeds` with step times at the fast and the slow end of their band."""
    ends = []
    for end, sign in ENDS:
        shifted, scales = scaled(sc, sign)
        if progress:
            progress(f"sensitivity: step times at the {end} end of their band")
        c = confirm(shifted, plan, seeds, settings, stop_early=False, workers=workers)
        ends.append(SensitivityEnd(end, scales, c.held, c.attainment, list(c.reasons)))
    return ends
