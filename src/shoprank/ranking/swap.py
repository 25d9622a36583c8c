"""A readers-writer lock: requests read the served parts together, a swap replaces them together.

A search reads the catalog, the retrievers, the feature values and the served log's item
ids at different moments. A catalogue update replaces all of them, so a request must see
either all the old ones or all the new ones: requests hold the lock shared (many at once,
:meth:`SwapLock.reading`); a swap holds it alone (:meth:`SwapLock.writing`), waiting for
the requests in flight to finish and holding new ones back meanwhile, so a stream of
requests cannot keep it out. A swap only assigns references, built beforehand: requests
wait for it about as long as for the slowest request in flight.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


class SwapLock:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False  # a swap holds the lock, or waits for the readers to leave
        self._mine = threading.local()  # this thread's shared holds: a request may call another

    @contextmanager
    def reading(self) -> Iterator[None]:
        depth = getattr(self._mine, "depth", 0)
        if depth == 0:
            with self._cond:
                while self._writer:
                    self._cond.wait()
                self._readers += 1
        self._mine.depth = depth + 1
        try:
            yield
        finally:
            self._mine.depth = depth
            if depth == 0:
                with self._cond:
                    self._readers -= 1
                    if self._readers == 0:
                        self._cond.notify_all()

    @contextmanager
    def writing(self) -> Iterator[None]:
        with self._cond:
            while self._writer:
                self._cond.wait()
            self._writer = True
            while self._readers:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._writer = False
                self._cond.notify_all()


def reads_catalog(method: F) -> F:
    """A :class:`~shoprank.ranking.ranker.Ranker` method that reads the served catalog: it runs
    under the shared hold of the ranker's ``catalog_updates.lock``, so a catalogue swap never
    lands in its middle."""

    @functools.wraps(method)
    def held(self: Any, *args: Any, **kwargs: Any) -> Any:
        with self.catalog_updates.lock.reading():
            return method(self, *args, **kwargs)

    return held  # type: ignore[return-value]
