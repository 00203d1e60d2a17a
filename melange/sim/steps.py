"""Timing of a run of k pure-decode steps, the fast path's one calculation.

During such a run the batch is fixed: n sequences, each adding one token of context per step, so
step s (0-based) reads `context + n*s` KV tokens. For `LinearStepModel` the total is the sum of an
arithmetic series and the step in progress at a given time is the root of a quadratic, both O(1);
any other `StepTimeModel` is summed step by step through `step_time`, the one seam. The closed
form is pinned against the step-by-step sum in tests/test_sim_fastpath.py.
"""

from __future__ import annotations

import math
from itertools import accumulate

from melange.core import LinearStepModel, StepTimeModel


class DecodeRun:
    """k decode steps of n sequences starting from `context` KV tokens."""

    __slots__ = ("_a", "_b", "_cum", "k", "total")

    def __init__(self, model: StepTimeModel, n: int, context: int, k: int) -> None:
        self.k = k
        if type(model) is LinearStepModel:
            self._a = model.step_time(0, n, context)  # first step
            self._b = model.beta_kv * n  # each step reads n more tokens than the one before
            self._cum = None
            self.total = k * self._a + self._b * k * (k - 1) / 2
        else:
            self._a = self._b = 0.0
            self._cum = list(accumulate(model.step_time(0, n, context + n * s) for s in range(k)))
            self.total = self._cum[-1] if k else 0.0

    def elapsed(self, steps: int) -> float:
        """Seconds the first `steps` steps take."""
        if self._cum is not None:
            return self._cum[steps - 1] if steps else 0.0
        return steps * self._a + self._b * steps * (steps - 1) / 2

    def steps_by(self, dt: float) -> int:
        """Steps done once the step in progress `dt` seconds into the run has finished (>= 1)."""
        if self._cum is not None:
            lo, hi = 0, self.k - 1  # first index with cum >= dt
            while lo < hi:
                mid = (lo + hi) // 2
                if self._cum[mid] >= dt:
                    hi = mid
                else:
                    lo = mid + 1
            return lo + 1
        a, b = self._a, self._b
        # elapsed(j) = b/2 j^2 + (a - b/2) j >= dt; take the root, then fix float rounding.
        if b > 0:
            c = a - b / 2
            j = math.ceil((-c + math.sqrt(c * c + 2 * b * dt)) / b)
        else:
            j = math.ceil(dt / a) if a > 0 else 1
        j = min(max(j, 1), self.k)
        while j < self.k and self.elapsed(j) < dt:
            j += 1
        while j > 1 and self.elapsed(j - 1) >= dt:
            j -= 1
        return j
