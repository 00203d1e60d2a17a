"""A sim-profile across the step model's uncertainty band: which cells move, and how much.

`melange profile --simulate --sensitivity` builds the profile three times, with every step time
as calibrated and scaled to the fast (1 − u) and slow (1 + u) end of the instance's band
(catalog/calibration.yaml: the GPU family's fit combined with the engine preset's), and reports
the cells whose max rate moves by more than `threshold` or that stop being servable.
"""

from __future__ import annotations

import numpy as np

from melange.core import BucketGrid


def band_changes(grid: BucketGrid, mid: np.ndarray, fast: np.ndarray, slow: np.ndarray,
                 threshold: float = 0.1) -> list[str]:
    """One line per cell whose max rate at either end differs from `mid` by more than
    `threshold` (relative), or that is served at one end and not at the other."""
    lines = []
    for i, j in np.ndindex(mid.shape):
        m, f, s = float(mid[i, j]), float(fast[i, j]), float(slow[i, j])
        if m == f == s == 0:
            continue
        moved = m == 0 or abs(f / m - 1) > threshold or abs(s / m - 1) > threshold
        if moved:
            lines.append(f"{grid.label(i, j)}: {s:.3g} (slow) / {m:.3g} / {f:.3g} (fast) req/s")
    return lines


def band_summary(mid: np.ndarray, fast: np.ndarray, slow: np.ndarray) -> dict:
    """Served cells at each end and the median relative move of the served ones."""
    served = mid > 0
    ratio = lambda end: float(np.median(end[served] / mid[served])) if served.any() else None  # noqa: E731
    return {"served": {"slow": int((slow > 0).sum()), "mid": int(served.sum()), "fast": int((fast > 0).sum())},
            "median_ratio": {"slow": ratio(slow), "fast": ratio(fast)}}
