"""Random optimizer instances of realistic shape, for tests and benchmarks (seeded)."""

from __future__ import annotations

import numpy as np

from melange.core import BucketGrid, GpuType, Profile, Workload

PAPER_COSTS = (0.70, 1.01, 3.67, 7.516)


def random_instance(rng: np.random.Generator, n_in: int = 10, n_out: int = 6, n_gpus: int = 4,
                    rate: float = 16.0, zero_share: float = 0.1, empty_share: float = 0.2
                    ) -> tuple[Workload, list[GpuType], dict[str, Profile]]:
    """A workload over an n_in x n_out grid and n_gpus types whose max rates fall with request
    size; about `zero_share` of profile cells are 0 (cannot serve), `empty_share` buckets empty."""
    grid = BucketGrid(tuple(range(1, n_in + 2)), tuple(range(1, n_out + 2)), indexed=True)
    dist = rng.dirichlet(np.ones(n_in * n_out)).reshape(n_in, n_out)
    dist[rng.random((n_in, n_out)) < empty_share] = 0.0
    if dist.sum() == 0:
        dist[0, 0] = 1.0
    dist /= dist.sum()
    size = np.add.outer(np.arange(n_in), np.arange(n_out)) + 1.0  # bigger requests, lower max rate
    gpus, profiles = [], {}
    for g in range(n_gpus):
        cost = PAPER_COSTS[g] if g < len(PAPER_COSTS) else float(rng.uniform(0.5, 12.0))
        speed = cost ** rng.uniform(0.6, 1.2)  # pricier GPUs are faster, not proportionally
        table = 8.0 * speed / size ** rng.uniform(0.8, 1.6) * rng.uniform(0.7, 1.3, (n_in, n_out))
        table[rng.random((n_in, n_out)) < zero_share] = 0.0
        name = f"gpu{g}"
        gpus.append(GpuType(name, round(cost, 3)))
        profiles[name] = Profile(name, np.round(table, 3))
    # Every bucket must be servable by someone.
    for i, j in np.argwhere(sum(p.max_rate for p in profiles.values()) == 0):
        profiles[gpus[-1].name].max_rate[i, j] = 0.5
    return Workload(grid, dist, rate), gpus, profiles
