"""Fitting the query-category head on the training split's clicks, within `shoprank understand`.

The labels are the catalogue categories of the items shoppers clicked for a search, read
from the training set's training split only (the validation and test requests never reach
the fit; the validation split's clicks score it). Every clicked search row counts: a
(query, category) pair is fitted once, weighted by its clicks. Fewer than
``understand.category_min_clicks`` clicked searches, or a single category, and there is no
head: the inputs it feeds are then neutral (:mod:`shoprank.inputs.understood`).

:func:`run_understand_step` is the step `shoprank understand`: the intent and attribute heads
(:func:`shoprank.models.understanding.run_understand`), then this head beside them.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from shoprank.logs import log
from shoprank.models.query_category import QueryCategoryHead, save_query_category

if TYPE_CHECKING:
    from shoprank.config import Params

logger = logging.getLogger(__name__)


def clicked_searches(
    path: Path, val_share: float, test_share: float
) -> dict[str, tuple[pd.DataFrame, np.ndarray]]:
    """Per split (train, val): its clicked search rows' query and category, and their query vectors."""
    from shoprank.inputs.frame import read_frame
    from shoprank.training.data import read_split

    split, keys = read_split(path, val_share, test_share)
    extra = pq.read_table(path, columns=["clicked", "category"]).to_pandas()
    wanted = (
        (extra["clicked"].to_numpy() == 1)
        & (keys["query"].fillna("").to_numpy() != "")
        & extra["category"].notna().to_numpy()
    )
    out = {}
    for name in ("train", "val"):
        rows = np.sort(split[name][wanted[split[name]]])
        frame = read_frame(path, ("query_embedding",), rows=rows)
        df = frame.df[["query", "category"]].astype(str).reset_index(drop=True)
        vectors = frame.vectors.get("query_embedding")
        out[name] = (df, np.asarray(vectors)) if vectors is not None else (df.iloc[:0], np.zeros((0, 0)))
    return out


def fit_query_category(params: Params) -> tuple[QueryCategoryHead | None, dict[str, Any]]:
    """The head fitted on the training split's clicked searches, and its report (or why none)."""
    from shoprank.training.train import training_set_path

    s = params.understand
    path = training_set_path(params)
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing (run `shoprank training-set`)")
    data = clicked_searches(path, params.train.val_share, params.train.test_share)
    train, vectors = data["train"]
    if len(train) < s.category_min_clicks or train["category"].nunique() < 2:
        why = (
            f"{len(train)} clicked searches in the training split over {train['category'].nunique()} "
            f"categories (understand.category_min_clicks: {s.category_min_clicks}, and two categories)"
        )
        return None, {"trained": False, "reason": why}
    # each (query, category) pair once, weighted by its clicks: the same fit, far fewer rows
    key = (train["query"] + "\x1f" + train["category"]).to_numpy(str)
    _, first, clicks = np.unique(key, return_index=True, return_counts=True)
    log(logger, "fitting the query-category head", pairs=len(first), clicks=len(train))
    head = QueryCategoryHead().fit(
        vectors[first],
        train["category"].to_numpy(object)[first],
        weights=clicks.astype(np.float64),
        c=s.c,
        max_iter=s.max_iter,
        seed=s.seed,
    )
    val, val_vectors = data["val"]
    report = {
        "trained": True,
        "clicks": len(train),
        "pairs": len(first),
        "categories": len(head.classes),
        # the validation split's clicked searches: never fitted on
        "validation": head.accuracy(val_vectors, val["category"].to_numpy(object)),
        "embedding_dim": int(vectors.shape[1]),
    }
    return head, report


def run_understand_step(params: Params) -> dict[str, Any]:
    """`shoprank understand`: the intent and attribute heads, then the query-category head.

    Both land in ``<paths.models>/understanding/``; the category head's report is the
    ``query_category`` entry of its report.json and of ``<paths.metrics>/understand.json``.
    """
    from shoprank.models.understanding import ARTIFACT, METRICS_FILE, REPORT_FILE, run_understand

    report = run_understand(params)
    out = Path(params.paths.models) / ARTIFACT
    head, category = fit_query_category(params)
    if head is not None:
        save_query_category(head, out)
    report["query_category"] = category
    (out / REPORT_FILE).write_text(json.dumps(report, indent=2) + "\n")
    metrics = Path(params.paths.metrics) / METRICS_FILE
    scores = json.loads(metrics.read_text())
    metrics.write_text(json.dumps({**scores, "query_category": category}, indent=2) + "\n")
    return report
