"""Random optimizer instances of realistic shape, for tests and benchmarks (seeded)."""

from __future__ import annotations

import numpy as np

from melange.core import BucketGrid, GpuType, Profile, Workload

PAPER_COSTS = (0.70, 1.01, 3.67, 7.516)
FLEET_COSTS = (0.70, 1.01, 1.86, 3.67, 7.516, 10.60)  # the paper's four, L40S and H200 (catalog prices)


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


def fleet_instance(rng: np.random.Generator, models: int = 2, classes: int = 3, types: int = 12,
                   n_in: int = 10, n_out: int = 6, rate: float = 40.0, rough: bool = False):
    """Services (model × SLO class), each with the first `types` (GPU × TP 1/2/4/8) instances of
    six GPUs that hold the model's weights, for the joint optimizer. A model k times larger serves 1/k the rate and needs TP >= k
    on the small GPUs; a tighter class serves less, a batch class more. Returns
    ({service: (workload, gpus, profiles)}, {service: {type: (hardware, GPUs)}}). `rough`: each
    cell ±15 % at random instead of a smooth tilt over sizes (a stress case, not a GPU's shape)."""
    size = np.add.outer(np.arange(n_in), np.arange(n_out)) + 1.0
    hardware = [(f"hw{h}", c, c ** rng.uniform(0.7, 1.0), mem)
                for h, (c, mem) in enumerate(zip(FLEET_COSTS, (24, 24, 48, 80, 80, 141)))]
    services, hw_of = {}, {}
    for mdl in range(models):
        weight_gb = 14.0 * 5 ** mdl  # 14 GB, 70 GB, ...
        base = 8.0 / 5 ** mdl / size ** rng.uniform(0.8, 1.4)
        for cls, slack in enumerate(np.linspace(0.5, 2.0, classes)):
            name = f"m{mdl}/c{cls}"
            dist = rng.dirichlet(np.ones(n_in * n_out)).reshape(n_in, n_out)
            grid = BucketGrid(tuple(range(1, n_in + 2)), tuple(range(1, n_out + 2)), indexed=True)
            gpus, profiles, hw_of[name] = [], {}, {}
            for hw, cost, speed, mem in hardware:
                for n in (1, 2, 4, 8):
                    if n * mem * 0.9 <= weight_gb * 1.1 or len(gpus) == types:  # weights do not fit; enough
                        continue
                    t = f"{n}x{hw}"
                    # A GPU is better at some sizes than others, smoothly (Mélange's premise).
                    tilt = (rng.uniform(0.85, 1.15, (n_in, n_out)) if rough else
                            size ** rng.uniform(-0.3, 0.3) * rng.uniform(0.95, 1.05, (n_in, n_out)))
                    table = base * slack * speed * n ** 0.8 * tilt
                    if slack < 1:  # a tight class: the largest requests only on fast instances
                        table[size > 10 * speed * n ** 0.5] = 0.0
                    gpus.append(GpuType(t, round(cost * n, 3)))
                    profiles[t] = Profile(t, np.round(table, 4))
                    hw_of[name][t] = (hw, n)
            top = gpus[-1].name
            profiles[top].max_rate[profiles[top].max_rate == 0] = 0.05  # every bucket servable
            share = rng.uniform(0.2, 0.6)
            services[name] = (Workload(grid, dist, rate * share / 5 ** mdl), gpus, profiles)
    return services, hw_of
