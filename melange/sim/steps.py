"""Timing of a run of k pure-decode steps, the fast path's one calculation.

During such a run the batch is fixed: n sequences, each adding one token of context per step, so
step s (0-based) reads `context + n*s` KV tokens. A step-time model may say how its step time
grows over such a run with `decode_lines(n, context)`: step s takes max_i(a_i + b_i·s). That is
convex and piecewise linear in s (the linear model: one line; the roofline: compute and memory
time, both linear in the context, so at most one breakpoint), so the run's total is a sum of
arithmetic series and the step in progress at a given time the root of a quadratic on one piece:
O(lines) per run, however long, and nothing is computed for steps that an arrival cuts off.
Any other `StepTimeModel` is summed step by step through `step_time`, the one seam. The closed
form is pinned against the step-by-step sum in tests/test_sim_fastpath.py.
"""

from __future__ import annotations

import math
from itertools import accumulate

from melange.core import StepTimeModel


def _envelope(lines, k: int) -> list[tuple[int, float, float]]:
    """(first step, a, b) of each piece of max_i(a_i + b_i·s) over the steps s in [0, k)."""
    if len(lines) == 1:
        return [(0, *lines[0])]
    if len(lines) == 2:  # the roofline's case, on every run: no search
        (a1, b1), (a2, b2) = lines if lines[0][1] <= lines[1][1] else lines[::-1]
        if a2 >= a1 or b2 == b1:  # the steeper line is on top from the start (or never)
            return [(0, a2, b2)] if a2 >= a1 else [(0, a1, b1)]
        cross = math.floor((a1 - a2) / (b2 - b1)) + 1  # first step the steeper one is above
        return [(0, a1, b1)] if cross >= k else [(0, a1, b1), (max(cross, 1), a2, b2)]
    def top(s: int) -> tuple[float, float]:
        return max(lines, key=lambda ab: (ab[0] + ab[1] * s, ab[1]))

    pieces, s = [], 0
    a, b = top(0)
    while s < k:
        pieces.append((s, a, b))
        nxt = k
        for a2, b2 in lines:  # a steeper line overtakes this one after the crossing
            if b2 > b:
                nxt = min(nxt, max(s + 1, math.floor((a - a2) / (b2 - b)) + 1))
        s = nxt
        if s < k:
            a, b = top(s)
    return pieces


class DecodeRun:
    """k decode steps of n sequences starting from `context` KV tokens."""

    __slots__ = ("_before", "_cum", "_pieces", "k", "total")

    def __init__(self, model: StepTimeModel, n: int, context: int, k: int) -> None:
        self.k = k
        lines = getattr(model, "decode_lines", None)
        if lines is not None:
            self._cum = None
            pieces = self._pieces = _envelope(lines(n, context), k)
            before = self._before = [0.0]  # seconds before each piece starts, then the total
            for p, (s0, a, b) in enumerate(pieces):
                s1 = pieces[p + 1][0] if p + 1 < len(pieces) else k
                before.append(before[-1] + self._sum(s0, s1, a, b))
            self.total = before[-1]
        else:
            self._pieces = self._before = None
            self._cum = list(accumulate(model.step_time(0, n, context + n * s) for s in range(k)))
            self.total = self._cum[-1] if k else 0.0

    @staticmethod
    def _sum(s0: int, s1: int, a: float, b: float) -> float:
        """Seconds of steps s0 .. s1-1 on the line a + b·s."""
        m = s1 - s0
        return m * a + b * (s0 + s1 - 1) * m / 2

    def elapsed(self, steps: int) -> float:
        """Seconds the first `steps` steps take."""
        if self._cum is not None:
            return self._cum[steps - 1] if steps else 0.0
        if steps <= 0:
            return 0.0
        pieces = self._pieces
        p = len(pieces) - 1  # the piece holding step steps-1 (a run has at most a few pieces)
        while pieces[p][0] > steps - 1:
            p -= 1
        s0, a, b = pieces[p]
        return self._before[p] + self._sum(s0, steps, a, b)

    def cut(self, dt: float) -> tuple[int, float]:
        """(steps, seconds) done once the step in progress `dt` seconds into the run has
        finished: where an arrival at `dt` cuts the run (steps >= 1)."""
        if self._cum is not None:
            lo, hi = 0, self.k - 1  # first index with cum >= dt
            while lo < hi:
                mid = (lo + hi) // 2
                if self._cum[mid] >= dt:
                    hi = mid
                else:
                    lo = mid + 1
            return lo + 1, self._cum[lo]
        # The piece in progress at dt, then m more steps on its line: the root of
        # b/2·m² + (a + b·s0 - b/2)·m = dt - before; then fix float rounding.
        pieces, before, k = self._pieces, self._before, self.k
        p = len(pieces) - 1
        while p > 0 and before[p] > dt:
            p -= 1
        s0, a, b = pieces[p]
        r = dt - before[p]
        c = a + b * s0 - b / 2
        if b > 0:
            m = math.ceil((-c + math.sqrt(max(c * c + 2 * b * r, 0.0))) / b)
        else:
            m = math.ceil(r / c) if c > 0 else 1
        j = min(max(s0 + m, 1), k)
        seconds = self.elapsed(j)
        while j < k and seconds < dt:
            j += 1
            seconds = self.elapsed(j)
        while j > 1:
            earlier = self.elapsed(j - 1)
            if earlier < dt:
                break
            j, seconds = j - 1, earlier
        return j, seconds
