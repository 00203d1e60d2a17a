"""What a load test sends and when: send times and exact lengths, drawn ahead from a seed.

Everything is drawn before the first request leaves (a seeded numpy Generator), so the client's
hot loop only sleeps and sends, and the same seed replays the same load. Rates and times here are
in the modelled GPU's seconds; `time_scale` K converts to wall seconds (wall = model / K) for an
emulator that runs K times faster.
"""

from __future__ import annotations

import numpy as np

from melange.core import BucketGrid, MelangeError
from melange.profiler.client import Job
from melange.sim.arrivals import interarrival_times


def send_times(rate: float, n: int, rng: np.random.Generator, process: str = "poisson",
               cv: float = 1.0) -> np.ndarray:
    """`n` send times (s, from 0) of a Poisson or gamma renewal process at `rate` req/s."""
    if not rate > 0 or n < 1:
        raise MelangeError("rate and requests: must be positive")
    gaps = interarrival_times(process, rate, cv, n, rng)
    return np.cumsum(gaps) - gaps[0]  # the first request leaves at once


def bucket_jobs(grid: BucketGrid, i: int, j: int, rate: float, n: int, rng: np.random.Generator, *,
                process: str = "poisson", cv: float = 1.0, time_scale: float = 1.0,
                seed: int = 0, first_id: int = 0) -> list[Job]:
    """`n` requests of bucket (i, j) at `rate` (lengths uniform inside the bucket, as the
    sim-profiles draw them), send times in wall seconds."""
    times = send_times(rate, n, rng, process, cv) / time_scale
    inputs = rng.integers(grid.in_edges[i], grid.in_edges[i + 1], n)
    outputs = rng.integers(grid.out_edges[j], grid.out_edges[j + 1], n)
    return [Job(first_id + k, float(times[k]), int(inputs[k]), int(outputs[k]), i, j, seed)
            for k in range(n)]


def mid_bucket(grid: BucketGrid, i: int, j: int) -> tuple[int, int]:
    """(input, output) lengths in the middle of bucket (i, j)."""
    return ((grid.in_edges[i] + grid.in_edges[i + 1]) // 2, (grid.out_edges[j] + grid.out_edges[j + 1]) // 2)
