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

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            failed: Callable[[T, BaseException], R] | None = None) -> Iterator[R]:
        """Results of fn(item), in completion order; closing the iterator stops the work.
        `failed(item, error)`: the result of an item whose worker died (else the error is raised)."""
        ...


def _ignore_sigint() -> None:
    # Ctrl-C reaches the whole process group; only the parent decides how to stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class LocalExecutor:
    """A pool of worker processes on this machine; `workers=1` runs in this process."""

    def __init__(self, workers: int | None = None) -> None:
        self.workers = max(1, workers or os.cpu_count() or 1)

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            failed: Callable[[T, BaseException], R] | None = None) -> Iterator[R]:
        """Results of fn(item) as they finish (a local pool's dead worker stops the run)."""
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
    """Ray tasks on a cluster (`address`, e.g. 'ray://head:10001' or 'auto') or a local Ray.

    The driver's melange package travels with the tasks (`runtime_env` py_modules), so every
    worker runs the code the results are keyed by; a task whose worker keeps dying (OOM, a
    segfault) becomes that item's `failed` result after Ray's retries, and the rest go on."""

    def __init__(self, address: str | None = None, workers: int | None = None) -> None:
        self.address, self.workers = address, workers

    def start(self) -> None:
        """Connect (or start a local Ray) once; SIGTERM keeps melange's handling (ray.init replaces it)."""
        ray = import_ray()
        if ray.is_initialized():
            return
        check_address(self.address)
        import melange

        local = {"num_cpus": self.workers} if self.address is None and self.workers else {}
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            ray.init(address=self.address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     runtime_env={"py_modules": [os.path.dirname(melange.__file__)]}, **local)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise MelangeError(f"--address {self.address}: cannot join the Ray cluster ({str(exc).splitlines()[0]})") \
                from None
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)

    def map(self, fn: Callable[[T], R], items: Iterable[T],
            failed: Callable[[T, BaseException], R] | None = None) -> Iterator[R]:
        """Results of fn(item) as Ray tasks finish."""
        ray = import_ray()
        self.start()
        task = ray.remote(max_retries=2)(fn)
        items = list(items)
        pending = {task.remote(item): item for item in items}
        try:
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                item = pending.pop(done[0])
                try:
                    yield ray.get(done[0])
                except (ray.exceptions.WorkerCrashedError, ray.exceptions.RayTaskError,
                        ray.exceptions.RaySystemError) as exc:
                    if failed is None:
                        raise
                    yield failed(item, exc)
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)


def check_address(address: str | None) -> None:
    """A Ray address that can be joined, checked in seconds (an unreachable one hung for minutes)."""
    import socket

    if address is None:
        return
    if address == "auto":
        if not (os.environ.get("RAY_ADDRESS") or os.path.exists("/tmp/ray/ray_current_cluster")):
            raise MelangeError("--address auto: no Ray cluster is running on this machine (start one with "
                               "`ray start --head`, or give its address)")
        return
    if address.startswith("ray://"):
        try:
            import ray.util.client  # noqa: F401  (ray[client])
        except ImportError:
            raise MelangeError("--address ray://...: needs Ray's client (pip install 'melange[ray]')") from None
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise MelangeError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise MelangeError(f"--address {address}: cannot reach it ({exc.strerror or exc})") from None


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
        check_address(address)
        return RayExecutor(address, workers)
    raise MelangeError(f"--executor: unknown {kind!r} (local or ray)")
