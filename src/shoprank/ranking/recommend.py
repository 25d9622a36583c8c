"""A recommendation feed: a shopper's page with no query.

The shopper's latest clicks (the ``recent_items`` of the online store's user history,
read like every user feature, with the same cache and fallbacks) feed the retrievers of
:mod:`shoprank.retrieval.history`; their fused candidates are scored by the champion as
a feed, re-ranked, explained and logged exactly like a search's. An unknown shopper has
no clicks: popular and new items only.

A feed is scored with the empty query, which is how the training set holds feed
impressions (query ``""``, no query id, ``is_search`` 0, no query embedding): the
ranker's own scoring path makes those inputs from :data:`FEED_QUERY`, as it does for
a ``rank`` request without a query.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import numpy as np

from shoprank.config import Serve
from shoprank.ranking import metrics, responses
from shoprank.ranking.catalog import Catalog
from shoprank.ranking.experiment import Arranged
from shoprank.ranking.explanations import Explainer
from shoprank.ranking.features import OnlineFeatures
from shoprank.ranking.metrics import stage
from shoprank.ranking.scoring import Scored, Scoring
from shoprank.ranking.served import ServedResponses, Slots
from shoprank.retrieval.history import FeedIndex, Shopper, retrieve

FEED_QUERY = ""  # a feed has no query
ENDPOINT = "recommend"


class Ranker(Protocol):
    """The parts of :class:`~shoprank.ranking.ranker.Ranker` a feed uses."""

    settings: Serve
    version: str
    catalog: Catalog
    features: OnlineFeatures
    feed: FeedIndex
    scoring: Scoring
    explainer: Explainer
    served: ServedResponses

    def arrange(self, s: Scored, k: int | None, feed: bool = False) -> Arranged: ...

    def slots(self, got: Arranged, shown: int | None = None) -> Slots: ...

    def experiment_of(self, got: Arranged) -> dict[str, Any]: ...


def shopper(ranker: Ranker, user_id: str) -> tuple[Shopper, bool, str | None]:
    """The shopper's recent clicks as item rows (newest first; the first ``serve.feed_history``
    seed the retrievers), whether the user is known, and the fallback the read used (None: the
    store answered, or the user was fresh in the cache)."""
    lookup = ranker.features.fetch(np.zeros(1, np.int64), user_id, FEED_QUERY)
    items = lookup.user.get("recent_items")
    clicked = [] if items is None or isinstance(items, float) else list(items)
    rows = [ranker.catalog.row_of[i] for i in clicked if i in ranker.catalog.row_of]
    seen = np.array(list(dict.fromkeys(rows)), dtype=np.int64)
    return Shopper(user_id, seen[: ranker.settings.feed_history], seen), lookup.user_known, lookup.fallback


def allowed_items(
    ranker: Ranker, who: Shopper, filters: Mapping[str, Any] | None, exclude_seen: bool
) -> np.ndarray | None:
    """The items a feed may show: those passing the filters, less the shopper's recent clicks."""
    mask = ranker.catalog.mask(filters)
    if exclude_seen and len(who.clicked):
        mask = np.ones(len(ranker.catalog), dtype=bool) if mask is None else mask
        mask[who.clicked] = False
    return mask


def recommend(
    ranker: Ranker,
    user_id: str,
    k: int,
    exclude_seen: bool,
    filters: Mapping[str, Any] | None,
    explain_results: bool,
    request_id: str,
    context: Mapping[str, Any] | None = None,
) -> dict:
    """Retrieve from the shopper's clicks, popular and new items; score as a feed; re-rank; explain."""
    timings: dict[str, float] = {}
    with stage("history", timings):
        who, known, read_fallback = shopper(ranker, user_id)
    with stage("retrieve", timings):
        allowed = allowed_items(ranker, who, filters, exclude_seen)
        got = retrieve(ranker.feed, who, ranker.settings.retrieve_n, allowed)
    head = {"user_id": user_id, "history": int(len(who.history))}
    degraded = [r for r in (read_fallback, ranker.feed.fallback) if r]
    if len(got.rows) == 0:
        metrics.EMPTY_RESULTS.labels(ENDPOINT).inc()
        ranker.served.remember(request_id, FEED_QUERY, user_id, np.zeros(0, np.int64), np.zeros(0))
        return {
            **responses.meta(ranker.version, request_id, degraded, timings, ENDPOINT, None),
            **head,
            "user_known": known,
            "candidates": 0,
            "results": [],
        }
    s = ranker.scoring.score(got.rows, FEED_QUERY, user_id, request_id, timings, context=context)
    with stage("rerank", timings):
        page = ranker.arrange(s, k, feed=True)
    order = page.order
    top = order[: ranker.settings.explain_top]
    why = ranker.explainer.reasons(s, top, timings) if explain_results else []
    with stage("log", timings):
        ranker.served.remember(
            request_id, FEED_QUERY, user_id, got.rows[order], page.scores[order], context, ranker.slots(page)
        )
    results = responses.recommended(ranker.catalog, got, page.scores, order, page.explored, why)
    ranker.served.sign(request_id, results)
    fallback = list(dict.fromkeys([*degraded, *s.fallback]))
    return {
        **responses.meta(ranker.version, request_id, fallback, timings, ENDPOINT, None),
        **ranker.experiment_of(page),
        **head,
        "user_known": s.user_known,
        "candidates": int(len(got.rows)),
        "results": results,
    }
