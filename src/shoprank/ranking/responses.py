"""The JSON answers of search, recommend and rank, and the metrics every answer counts into."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from shoprank.ranking import metrics
from shoprank.ranking.catalog import Catalog

if TYPE_CHECKING:
    from shoprank.retrieval.history import Recommended
    from shoprank.retrieval.hybrid import Retrieved


def meta(
    version: str,
    request_id: str,
    fallback: list[str],
    timings: dict[str, float],
    endpoint: str,
    query_vector: str | None,
) -> dict[str, Any]:
    """The fields every search, recommend and rank answer has (and their fallback and query-vector counts)."""
    for reason in fallback:
        metrics.FALLBACKS.labels(endpoint, reason).inc()
    if query_vector is not None:
        metrics.QUERY_VECTORS.labels(endpoint, query_vector).inc()
    return {
        "request_id": request_id,
        "model_version": version,
        "degraded": bool(fallback),
        "fallback": ",".join(fallback) if fallback else None,
        "query_vector": query_vector,
        "timings_ms": timings,
    }


def ranked(
    catalog: Catalog,
    rows: np.ndarray,
    scores: np.ndarray,
    order: np.ndarray,
    why: list[list[dict]] | None,
) -> list[dict[str, Any]]:
    """rank's results: every candidate in score order, with reasons for the first ``len(why)``."""
    return [
        {
            "item_id": str(catalog.item_ids[rows[i]]),
            "score": round(float(scores[i]), 6),
            "position": p + 1,
            "attributes": catalog.attributes(int(rows[i])),
            **({"reasons": why[p]} if why is not None and p < len(why) else {}),
        }
        for p, i in enumerate(order.tolist())
    ]


def searched(
    catalog: Catalog,
    got: Retrieved,
    scores: np.ndarray,
    order: np.ndarray,
    explored: np.ndarray,
    why: list[list[dict]],
) -> list[dict[str, Any]]:
    """search's results: the page in ``order``, with display facts, retrieval scores and reasons.

    ``scores`` are per retrieved row (``got.rows``); ``order`` indexes both.
    """
    return [
        _shown(
            catalog,
            int(got.rows[i]),
            p,
            float(scores[i]),
            bool(explored[p]),
            {"bm25": round(float(got.bm25[i]), 3), "cosine": round(float(got.cosine[i]), 3)},
            why,
            "search",
        )
        for p, i in enumerate(order.tolist())
    ]


def recommended(
    catalog: Catalog,
    got: Recommended,
    scores: np.ndarray,
    order: np.ndarray,
    explored: np.ndarray,
    why: list[list[dict]],
) -> list[dict[str, Any]]:
    """recommend's results: as search's, with the retrievers that found each item and its fused score."""
    results = []
    for p, i in enumerate(order.tolist()):
        sources = list(got.sources[i])
        for source in sources:
            metrics.FEED_SOURCES.labels(source).inc()
        retrieval = {"sources": sources, "fused": round(float(got.score[i]), 5)}
        results.append(
            _shown(
                catalog, int(got.rows[i]), p, float(scores[i]), bool(explored[p]), retrieval, why, "recommend"
            )
        )
    return results


def _shown(
    catalog: Catalog,
    r: int,
    p: int,
    score: float,
    explored: bool,
    retrieval: dict[str, Any],
    why: list[list[dict]],
    endpoint: str,
) -> dict[str, Any]:
    """One result of a page: item ``r`` at 0-based position ``p``."""
    item = catalog.items.iloc[r]
    metrics.SCORES.labels(endpoint).observe(score)
    return {
        "position": p + 1,
        "item_id": str(catalog.item_ids[r]),
        "title": str(item["title"]),
        "price": round(float(item["price"]), 2),
        "category": str(item["category"]),
        "brand": None if pd.isna(item.get("brand")) else str(item.get("brand")),
        "attributes": catalog.attributes(r),  # filled ones are marked inferred
        "score": round(score, 6),
        "new": bool(catalog.is_new[r]),
        "exploration": explored,
        "retrieval": retrieval,
        "reasons": why[p] if p < len(why) else [],
    }
