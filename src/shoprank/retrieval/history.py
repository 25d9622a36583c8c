"""Candidates for a recommendation feed (no query): named retrievers over a shopper's clicks, fused.

:data:`RETRIEVERS` maps a name to a function ``(index, shopper, n, allowed) -> rows`` (the
top ``n`` item rows inside the ``allowed`` mask, best first); :func:`retrieve` asks each
for ``n`` and fuses the lists by reciprocal rank, as :mod:`~shoprank.retrieval.hybrid`
fuses BM25 and nearest neighbours, remembering which retrievers found each item; each
retriever's head is kept whatever the fused scores.
A retriever is added with one entry.

- ``co_clicked``: the co-click neighbours (:mod:`~shoprank.retrieval.clicks`) of the
  shopper's latest clicks, a more recent click weighing more
- ``similar``: the nearest items, by text embedding, to the shopper's latest clicks, taken
  in turn from each click, the latest first
- ``popular``: the items clicked most in the batch's last days
- ``new``: the items listed within ``features.new_item_days``, newest first
- ``collaborative``: the items a collaborative-filtering candidate scores highest for the
  shopper (:mod:`~shoprank.retrieval.factors`), when the bundle has its factors

A shopper without clicks (unknown, or new) gets ``popular`` and ``new``, and
``collaborative`` when the model learned a row for them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shoprank.logs import log
from shoprank.retrieval.clicks import NeighbourTable, read_tables
from shoprank.retrieval.factors import Factors, read_factors
from shoprank.retrieval.hybrid import RRF_K, HybridRetriever

logger = logging.getLogger(__name__)
NO_TABLES = "no_click_tables"  # the fallback named when the bundle has no click tables


@dataclass(frozen=True)
class Shopper:
    user_id: str | None
    history: np.ndarray  # item rows of the latest clicks the retrievers start from, newest first
    seen: np.ndarray | None = None  # every recent click known (history is its head); None: history

    @property
    def clicked(self) -> np.ndarray:
        return self.history if self.seen is None else self.seen


@dataclass
class Recommended:
    rows: np.ndarray  # item rows, best first
    score: np.ndarray  # fused RRF score
    sources: list[tuple[str, ...]]  # the retrievers that found each row, in RETRIEVERS' order


class FeedIndex:
    """What the feed's retrievers read: the click tables, the embedding index, new and popular items."""

    def __init__(
        self,
        items: HybridRetriever,
        co_clicks: NeighbourTable,
        popularity: np.ndarray,
        is_new: np.ndarray,
        listed: np.ndarray,
        fallback: str | None = None,
        factors: Factors | None = None,
    ):
        self.items, self.co_clicks, self.fallback, self.factors = items, co_clicks, fallback, factors
        self.popularity = popularity  # kept: a catalogue update builds the next index from it
        rows = np.arange(len(popularity))
        order = np.lexsort((rows, -popularity))  # most popular first, ties by row
        self.popular_order = order[popularity[order] > 0]
        new = np.flatnonzero(np.asarray(is_new).astype(bool))
        self.new_order = new[np.lexsort((new, -np.asarray(listed)[new]))]  # newest first, ties by row

    @classmethod
    def load(
        cls,
        folder: Path,
        item_ids: np.ndarray,
        items: HybridRetriever,
        is_new: np.ndarray,
        listed: np.ndarray,
        popularity: np.ndarray,
    ) -> FeedIndex:
        """The bundle's click tables in ``folder``; without them (a bundle packaged before feeds had
        them) no co-clicks, popularity is ``popularity`` and responses name :data:`NO_TABLES`."""
        if not folder.is_dir():
            log(logger, "no click tables in the bundle", folder=str(folder), level=logging.WARNING)
            empty = NeighbourTable.empty(len(item_ids))
            return cls(items, empty, np.asarray(popularity, np.float64), is_new, listed, NO_TABLES)
        table, clicks = read_tables(folder, item_ids)
        factors = read_factors(folder, item_ids)
        return cls(items, table, clicks.astype(np.float64), is_new, listed, factors=factors)


Retriever = Callable[[FeedIndex, Shopper, int, np.ndarray | None], np.ndarray]


def _top(scores: np.ndarray, n: int) -> np.ndarray:
    """Rows of the ``n`` largest positive scores, ties by row."""
    found = np.flatnonzero(scores > 0)
    return found[np.lexsort((found, -scores[found]))][:n]


def co_clicked(index: FeedIndex, shopper: Shopper, n: int, allowed: np.ndarray | None) -> np.ndarray:
    scores = np.zeros(len(index.co_clicks.indptr) - 1)
    for recency, row in enumerate(shopper.history.tolist()):
        rows, weights = index.co_clicks.of(row)
        scores[rows] += weights / (1.0 + recency)
    if allowed is not None:
        scores[~allowed] = 0.0
    return _top(scores, n)


def similar(index: FeedIndex, shopper: Shopper, n: int, allowed: np.ndarray | None) -> np.ndarray:
    if not len(shopper.history):
        return np.zeros(0, np.int64)
    mask = np.ones(index.items.size, bool) if allowed is None else allowed.copy()
    mask[shopper.history] = False  # an item is not its own neighbour
    rows, _ = index.items.nearest(index.items.vectors[shopper.history], n, mask)
    # round robin, the latest click first: every click's nearest item, then every click's
    # second nearest...; so a click in a dense neighbourhood cannot crowd the others out
    rows = rows.T.ravel()
    rows = rows[rows >= 0]
    _, first = np.unique(rows, return_index=True)
    return rows[np.sort(first)][:n]


def _in_order(order: np.ndarray, n: int, allowed: np.ndarray | None) -> np.ndarray:
    return (order if allowed is None else order[allowed[order]])[:n]


def popular(index: FeedIndex, shopper: Shopper, n: int, allowed: np.ndarray | None) -> np.ndarray:
    return _in_order(index.popular_order, n, allowed)


def new(index: FeedIndex, shopper: Shopper, n: int, allowed: np.ndarray | None) -> np.ndarray:
    return _in_order(index.new_order, n, allowed)


def collaborative(index: FeedIndex, shopper: Shopper, n: int, allowed: np.ndarray | None) -> np.ndarray:
    scores = index.factors.scores(shopper.user_id) if index.factors is not None else None
    if scores is None:
        return np.zeros(0, np.int64)
    scores = scores.copy()
    if allowed is not None:
        scores[~allowed] = -np.inf
    found = np.flatnonzero(np.isfinite(scores))
    return found[np.lexsort((found, -scores[found]))][:n]


RETRIEVERS: dict[str, Retriever] = {
    "co_clicked": co_clicked,
    "similar": similar,
    "collaborative": collaborative,
    "popular": popular,
    "new": new,
}


def retrieve(
    index: FeedIndex,
    shopper: Shopper,
    n: int,
    allowed: np.ndarray | None = None,
    retrievers: dict[str, Retriever] = RETRIEVERS,
) -> Recommended:
    """The fused top ``n`` of every retriever (each asked for ``n``) inside ``allowed``.

    Half the ``n`` slots are shared out among the retrievers: each keeps its own best
    ``n // (2 * len(retrievers))`` candidates, so an item found by one retriever only, at its
    head, is not crowded out by items that sit midway down several lists; the other half
    goes by reciprocal-rank fusion.
    """
    allowed = index.items.within(allowed)  # delisted items are never candidates
    fused: dict[int, float] = {}
    found_by: dict[int, list[str]] = {}
    heads: list[int] = []
    quota = n // (2 * max(len(retrievers), 1))
    for name, find in retrievers.items():
        found = find(index, shopper, n, allowed).tolist()
        heads.extend(found[:quota])
        for rank, r in enumerate(found):
            fused[r] = fused.get(r, 0.0) + 1.0 / (RRF_K + rank + 1)
            found_by.setdefault(r, []).append(name)
    kept = set(heads)
    rest = sorted((r for r in fused if r not in kept), key=lambda r: -fused[r])  # ties: as found
    chosen = kept | set(rest[: max(n - len(kept), 0)])
    rows = np.asarray(sorted((r for r in fused if r in chosen), key=lambda r: -fused[r]), np.int64)
    score = np.asarray([fused[r] for r in rows.tolist()], np.float32)
    return Recommended(rows, score, [tuple(found_by[r]) for r in rows.tolist()])
