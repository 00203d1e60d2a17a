"""Routing: a GPU type by the plan's shares for the request's bucket, then an instance of it.

The type choice depends only on the bucket and the random stream, so it is drawn up front for
all requests (vectorised). The instance choice may depend on the live state of the instances
(least work), so it is made at arrival time by one of the small pickers in `ROUTERS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from melange.core import BucketGrid, Plan


def type_table(plan: Plan, names: Sequence[str], grid_shape: tuple[int, int]) -> np.ndarray:
    """Cumulative share per flat bucket over `names`, shape (buckets, types). Buckets the plan
    gives no traffic (e.g. empty buckets hit by a replayed trace) fall back to instance counts."""
    share = np.stack([np.asarray(plan.share.get(g, np.zeros(grid_shape)), dtype=float).reshape(-1)
                      for g in names], axis=1)
    counts = np.array([plan.counts.get(g, 0) for g in names], dtype=float)
    total = share.sum(axis=1, keepdims=True)
    share = np.where(total > 1e-12, share / np.where(total > 1e-12, total, 1.0), counts / counts.sum())
    return np.cumsum(share, axis=1)


def choose_types(table: np.ndarray, grid: BucketGrid, input_tokens: np.ndarray,
                 output_tokens: np.ndarray, rng: np.random.Generator | None,
                 u: np.ndarray | None = None) -> np.ndarray:
    """Index into the table's types of the GPU type serving each request; lengths outside the
    grid (a replayed trace) are routed as the nearest bucket. `u`: each request's uniform draw,
    when drawn beforehand (else from `rng`)."""
    n_in, n_out = grid.shape
    i = np.clip(np.searchsorted(grid.in_edges, input_tokens, side="right") - 1, 0, n_in - 1)
    j = np.clip(np.searchsorted(grid.out_edges, output_tokens, side="right") - 1, 0, n_out - 1)
    cum = table[i * n_out + j]
    u = (rng.random(len(i)) if u is None else np.asarray(u))[:, None]
    return np.minimum((u >= cum).sum(axis=1), table.shape[1] - 1)


class Picker(Protocol):
    """Chooses one of a GPU type's instances for a new request."""

    def pick(self, work: list[int]) -> int:
        """Index of the chosen instance, given each instance's outstanding tokens."""
        ...


class LeastWork:
    """Fewest outstanding tokens (input + output of unfinished requests); ties -> lowest index.
    Assignment-based, so it changes only at arrivals and completions: the fast path and the
    exact path route identically."""

    def __init__(self, rng: np.random.Generator) -> None:
        pass

    def pick(self, work: list[int]) -> int:
        """Index of the least-loaded instance."""
        return work.index(min(work))


class RoundRobin:
    """Cycle through the instances of the type."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._next = 0

    def pick(self, work: list[int]) -> int:
        """Next instance in turn."""
        k = self._next % len(work)
        self._next = k + 1
        return k


class RandomPick:
    """Uniformly random instance (from the run's generator)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng

    def pick(self, work: list[int]) -> int:
        """A random instance index."""
        return int(self._rng.integers(len(work)))


ROUTERS: dict[str, type] = {"least_work": LeastWork, "round_robin": RoundRobin, "random": RandomPick}
