"""Monotone profiles: a bucket of requests no longer in either length never gets a lower rate.

A sim-profile's search judges each bucket alone, and a bucket of short answers can come out
slower than its neighbour of longer ones: without chunked prefill, a neighbour's prompt stalls
every running sequence for a whole prefill, and a short answer has few gaps to spread that stall
over, so its TPOT (per request, or pooled under the paper's rule when the bucket is alone) is
really worse per token. Such a table would tell the solver that a shorter request costs more than
a longer one. So each cell is lowered to the lowest rate of any servable cell at or before it in
both lengths: the table is non-increasing in input and output length, and no cell is ever above
the rate its own search saw hold on its own requests (raising the short cells instead would
publish rates no run supported). What a fleet carries on a mix is measured on the fleet
(`validate/capacity.py`), not inferred here.

Kept apart from `profile_sim.py` on purpose: the per-bucket search cache is keyed by that file's
source, and this post-processing does not change any bucket's search.
"""

from __future__ import annotations

import numpy as np


def monotone(rates: np.ndarray) -> np.ndarray:
    """Each servable cell lowered to the lowest servable rate at or before it (cells of 0, which
    cannot serve, stay 0 and bound nothing)."""
    rates = np.asarray(rates, dtype=float)
    served = rates > 0
    low = np.minimum.accumulate(np.minimum.accumulate(np.where(served, rates, np.inf), axis=0), axis=1)
    return np.where(served, low, 0.0)
