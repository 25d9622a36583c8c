"""The page step's parts, measured apart: the /search page rebuilt from the ranker's scores
under other page settings, in the same run as the service's own page.

Each variant takes the champion's scores of the request's retrieved candidates (the answer
of ``/rank``, which has no page step) and arranges the top 10 with
:func:`shoprank.ranking.rerank.rerank` on the catalogue's categories and new-item flags,
as the service arranges a page: category diversity (multiplicative, the service's original
form, or additive on the P(click) scale) and exploration slots (draws seeded by the
request). The service's own page is the ``/search page`` ranking beside them.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np


class Setting(NamedTuple):
    diversity: float
    additive: bool
    explore_share: float


# name -> page settings; "no diversity, no exploration" is the ranker's order itself
VARIANTS: dict[str, Setting] = {
    "page: diversity 0.15, exploration 0.1": Setting(0.15, False, 0.1),
    "page: diversity 0.15, no exploration": Setting(0.15, False, 0.0),
    "page: diversity 0.05, no exploration": Setting(0.05, False, 0.0),
    "page: additive diversity 0.02, no exploration": Setting(0.02, True, 0.0),
    "page: additive diversity 0.005, no exploration": Setting(0.005, True, 0.0),
    "page: no diversity, exploration 0.1": Setting(0.0, False, 0.1),
}


def pages(
    ranker: Any, candidates: list[str], ranked: list[dict], seed: int, k: int = 10
) -> dict[str, list[str]]:
    """Per variant, the item ids of the page it makes of ``candidates`` scored as ``ranked``
    (``/rank``'s results: item id and score)."""
    from shoprank.ranking.rerank import rerank

    score_of = {r["item_id"]: float(r["score"]) for r in ranked}
    ids = np.array(candidates)
    scores = np.array([score_of[i] for i in candidates])
    rows = ranker.catalog.rows_of(candidates)
    groups, is_new = ranker.catalog.category[rows], ranker.catalog.is_new[rows]
    out = {}
    for name, s in VARIANTS.items():
        rng = np.random.default_rng(seed)
        page = rerank(scores, groups, is_new, k, s.diversity, s.explore_share, rng, s.additive)
        out[name] = ids[page.order].tolist()
    return out
