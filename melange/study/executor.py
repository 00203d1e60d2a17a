"""Where sweep points run: one small interface, a local process pool (default) and Ray.

    with closing(executor.map(fn, items)) as results:
        for result in results:   # in the order they finish
            ...

Closing the iterator (or leaving it on an exception such as Ctrl-C) stops the workers: pending
items are dropped and running ones are terminated, so the caller keeps exactly the results it
has already received. `fn` must be a module-level function (it is pickled to the workers).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol, TypeVar

from melange.core import MelangeError

T = TypeVar("T")
R = TypeVar("R")


class Executor(Protocol):
    """Maps a function over items and yields results as they finish."""

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Results of fn(item), in completion order; closing the iterator stops the work."""
        ...


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; only the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor:
    """A pool of worker processes on this machine; `workers=1` runs in this process."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Results of fn(item) as they finish."""
        items = list(items)
        if self.workers == 1 or len(items) <= 1:
            for item in items:
                yield fn(item)
            return
        # spawn: the parent may run threads (the progress bar), which fork would copy mid-state.
        ctx = multiprocessing.get_context("spawn")
        pool = ctx.Pool(min(self.workers, len(items)), initializer=_ignore_sigint)
        try:
            yield from pool.imap_unordered(fn, items)
            pool.close()
        finally:
            pool.terminate()  # no-op after close(); stops running work after an interrupt
            pool.join()


class RayExecutor:
    """Ray tasks on a cluster (`address`, e.g. 'ray://head:10001' or 'auto') or a local Ray."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address, self.workers = address, workers

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
        """Results of fn(item) as Ray tasks finish."""
        ray = import_ray()
        if not ray.is_initialized():
            local = {"num_cpus": self.workers} if self.address is None and self.workers else {}
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                     configure_logging=False, **local)
        task = ray.remote(fn)
        pending = [task.remote(item) for item in items]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def import_ray():
    """The ray module, or a one-line error naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise MelangeError("--executor: ray is not installed (pip install 'melange[ray]')") from None
    return ray


def make_executor(kind: str = "local", *, workers: int | None = None, address: str | None = None) -> Executor:
    """The executor named by `--executor`."""
    if kind == "local":
        if address:
            raise MelangeError("--address: only with --executor ray")
        return LocalExecutor(workers)
    if kind == "ray":
        import_ray()  # fail before any work
        return RayExecutor(address, workers)
    raise MelangeError(f"--executor: unknown {kind!r} (local or ray)")
