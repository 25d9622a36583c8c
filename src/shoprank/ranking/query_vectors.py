"""A query's text vector: this process's cache, else the online store, else one encoder pass.

The store holds the ``query_embedding`` of every logged query (the ``query_text`` view,
computed offline by the same encoder from the normalised text, which is what the model
was trained on). A query the logs never had, or any query while the store is down, costs
one encoder pass. Every vector found is cached by its normalised text; the source is
reported as ``cache``, ``store`` or ``encoder`` (responses name it, metrics count it).
The empty query (a feed) is zeros, from no source.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from typing import Any

import numpy as np

from shoprank.features.queries import normalise_query, query_id
from shoprank.logs import log
from shoprank.ranking.metrics import stage

logger = logging.getLogger(__name__)


class QueryVectors:
    """The query-vector cache (LRU, ``capacity`` texts) in front of the store and the encoder."""

    def __init__(self, encoder: Any, features: Any, dim: int, capacity: int):
        self.encoder = encoder  # .encode(list[str]) -> (n, dim)
        self.features = features  # .query_vector(query_id) -> vector or None (never raises)
        self.dim, self.capacity = dim, capacity
        self._cache: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    def cached(self, query: str) -> np.ndarray | None:
        """The query's vector if this process has it (the empty query: zeros), else None."""
        norm = normalise_query(query)
        if not norm:
            return np.zeros(self.dim, np.float32)
        with self._lock:
            hit = self._cache.get(norm)
            if hit is not None:
                self._cache.move_to_end(norm)
            return hit

    def resolve(
        self, query: str, stored: np.ndarray | None, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, str]:
        """The vector of a query the cache missed: ``stored`` (from the online store) if usable,
        else one encoder pass (timed as ``encode``: responses show who paid for it). Cached."""
        norm = normalise_query(query)
        vec, source = self._usable(stored), "store"
        if vec is None:
            with stage("encode", {} if timings is None else timings):
                vec, source = self.encoder.encode([norm])[0], "encoder"
        with self._lock:
            self._cache[norm] = vec
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        return vec, source

    def vector(self, query: str, timings: dict[str, float] | None = None) -> tuple[np.ndarray, str | None]:
        """The query's vector and where it came from: ``cache``, ``store`` or ``encoder``.

        The cache, else one query-only read of the online store (timed as ``query_store``),
        else one encoder pass. The empty query (a feed) is zeros, source None.
        """
        qid = query_id(query)
        if not qid:
            return np.zeros(self.dim, np.float32), None
        hit = self.cached(query)
        if hit is not None:
            return hit, "cache"
        with stage("query_store", {} if timings is None else timings):
            stored = self.features.query_vector(qid)
        return self.resolve(query, stored, timings)

    def _usable(self, vec: np.ndarray | None) -> np.ndarray | None:
        """A stored vector that fits this model (its width, finite); None sends the query to the encoder."""
        if vec is None:
            return None
        if vec.shape != (self.dim,) or not np.isfinite(vec).all():
            log(
                logger,
                "stored query embedding does not fit the model; encoding",
                shape=list(vec.shape),
                level=logging.WARNING,
            )
            return None
        return vec
