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

**A stability guard band under the paper's rule** (`published`). A per-request rule with a
latency limit keeps a rate away from saturation by itself: queueing breaks the TTFT limit long
before the queue runs away. The paper's averaged rule (`mean_itl`) limits no request's wait, so
its max rate is the throughput a GPU barely keeps up with, and a confirming trial of 10,000
arrivals can pass a rate whose queue grows slowly: 3 of 16 sampled cells of the paper profiles
were unstable over 20,000 fresh requests at their searched rate, none at 90 % of it. So under
`mean_itl` the published rate is `STABILITY_GUARD` (0.9) times the monotone table, as the
attainment guard band keeps per-request rules off their edge.

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


STABILITY_GUARD = 0.9  # under `mean_itl`: the share of the searched rate that is published


def published(rates: np.ndarray, per_request: bool) -> np.ndarray:
    """The rates a sim-profile publishes: monotone, and under the paper's averaged rule
    (`per_request` False) with the stability guard band (module docstring)."""
    table = monotone(rates)
    return table if per_request else table * STABILITY_GUARD
