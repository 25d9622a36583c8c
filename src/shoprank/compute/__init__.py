"""One function mapped over partitions, in this process or as Ray tasks (``compute.engine``).

A heavy step (the point-in-time join of the training set, evaluation's candidate chunks,
the encoding of new texts) splits its input into partitions and calls
:func:`map_partitions` with the function that handles one partition. ``local`` calls it on
each partition in turn; ``ray`` submits one Ray task per partition and Ray schedules them
on the cluster's CPUs. Either way the caller gets the results in the partitions' order,
so the step's output does not depend on the engine.

The function must be importable by the workers (a function of the ``shoprank`` package,
installed on every node) and its arguments picklable. Arguments every partition shares
(``shared``: settings, models) go to Ray's object store once, not once per task.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from shoprank.config_compute import ADDRESS, ENGINE, Compute
from shoprank.logs import log

logger = logging.getLogger(__name__)
P = TypeVar("P")
R = TypeVar("R")


class ComputeError(RuntimeError):
    """The engine is missing or unreachable, or a partition failed: the message names the setting
    or the partition."""


def ray_module(settings: Compute) -> Any:
    """``ray``, connected as ``settings`` say (started in-process when ``address`` is null)."""
    try:
        import ray
    except ImportError as exc:
        raise ComputeError(
            f"{ENGINE} is ray, but the ray package is not installed: run `make setup` (ray is pinned in "
            f"requirements.lock) or `pip install 'shoprank[ray]'`, or set {ENGINE}: local in params.yaml"
        ) from exc
    if not ray.is_initialized():
        _connect(ray, settings)
    return ray


def _connect(ray: Any, settings: Compute) -> None:
    address = settings.address
    start = time.perf_counter()
    if address is None:
        ray.init(num_cpus=settings.num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    else:
        if address != "auto":
            _reachable(address, settings.connect_timeout_s)
        try:
            ray.init(address=address, logging_level=logging.WARNING)
        except (ConnectionError, TimeoutError, RuntimeError, ValueError) as exc:
            raise ComputeError(
                f"{ADDRESS} is {address!r}, but no Ray cluster answers there ({exc}). Start one "
                f"(`ray start --head`), correct {ADDRESS}, or set it to null to start Ray in this process"
            ) from exc
    cpus = ray.cluster_resources().get("CPU", 0)
    log(logger, "ray connected", address=address, cpus=cpus, seconds=round(time.perf_counter() - start, 1))


def _reachable(address: str, timeout_s: float) -> None:
    """Fail fast, naming the setting, when nothing listens at ``host:port`` (Ray itself retries for long)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ComputeError(
            f"{ADDRESS} is {address!r}, but nothing answers there within {timeout_s:g} s ({exc}); "
            f"start the cluster's head (`ray start --head`), correct {ADDRESS}, or set it to null "
            "to start Ray in this process"
        ) from exc


def partition_count(settings: Compute, rows: int) -> int:
    """How many partitions ``rows`` rows make: ``compute.partitions``, else 1 (local) or the
    cluster's CPUs."""
    if settings.partitions is not None:
        n = settings.partitions
    elif settings.engine == "local":
        n = 1
    else:
        n = int(ray_module(settings).cluster_resources().get("CPU", 1))
    return max(1, min(n, rows))


def bounds(rows: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ``(lo, hi)`` slices of ``range(rows)``, as even as can be (none empty)."""
    parts = max(1, min(parts, rows)) if rows else 1
    edges = [rows * i // parts for i in range(parts + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def map_partitions(
    settings: Compute,
    fn: Callable[..., R],
    parts: Sequence[P],
    shared: tuple = (),
    what: str = "step",
) -> list[R]:
    """``[fn(part, *shared) for part in parts]`` on ``settings.engine``, in the order of ``parts``.

    A failed partition fails the whole call: on ray with a :class:`ComputeError` naming the
    partition (the other tasks are cancelled); locally the exception is the function's own,
    with a note naming the partition.
    """
    start = time.perf_counter()
    if settings.engine == "local":
        out = []
        for i, part in enumerate(parts):
            try:
                out.append(fn(part, *shared))
            except Exception as exc:
                exc.add_note(f"{what}: partition {i + 1} of {len(parts)}")
                raise
            _progress(what, i, len(parts), start)
        return out
    ray = ray_module(settings)
    task = ray.remote(fn)
    refs = [ray.put(x) for x in shared]  # once for every task
    futures = [task.remote(part, *refs) for part in parts]
    results: list[R] = []
    for i, future in enumerate(futures):
        try:
            results.append(ray.get(future))
        except Exception as exc:
            _abandon(ray, futures[i + 1 :])
            cause = getattr(exc, "cause", None) or exc
            raise ComputeError(
                f"{what}: partition {i + 1} of {len(parts)} failed on Ray: {type(cause).__name__}: {cause}"
            ) from exc
        _progress(what, i, len(parts), start)
    return results


def _abandon(ray: Any, futures: list) -> None:
    """Cancel the tasks still to come and wait for them: nothing of a failed step runs on."""
    for future in futures:
        ray.cancel(future, force=True)
    for future in futures:
        with contextlib.suppress(Exception):  # cancelled, or failed too: the first failure is reported
            ray.get(future)


def _progress(what: str, i: int, n: int, start: float) -> None:
    if n > 1:
        log(logger, f"{what} done", partition=i + 1, of=n, seconds=round(time.perf_counter() - start, 1))
