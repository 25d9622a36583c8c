"""Scoring one request's candidates with the champion, on the fast path or the pandas path.

Features are built by the same code as training and evaluation: the online store gives
the Feast feature service's values (the columns of the point-in-time training set),
:func:`shoprank.inputs.apply.derive` adds the cross features, and the champion's own
``predict`` (with its fitted preprocessing) scores every candidate in one batched call.
A neural champion skips the frame: :mod:`shoprank.ranking.fastpath` builds the same
inputs from arrays, and :meth:`Scoring.check_fast_path` makes sure at start-up that they
are the same (else the pandas path serves).

A fine-tuned (or LoRA) champion tokenizes texts with its own encoder: the frame carries
them as training had them (:mod:`shoprank.inputs.texts`), the normalised query and the
catalog's item text. Query vectors (retrieval, the frozen inputs, the reasons' similarity)
stay the stock encoder's: the features and the retrieval index were built with it.

``serve.objective`` turns the champion's P(click), and its P(purchase | click) where the
objective reads it, into the score a page is ordered by (models/objective.py, the same
function evaluation ranks with); reasons still explain the P(click) part.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from shoprank.features.queries import normalise_query
from shoprank.features.queries import query_id as query_id_of
from shoprank.inputs.apply import derive
from shoprank.inputs.declare import request_columns, texts
from shoprank.inputs.frame import Frame
from shoprank.logs import log
from shoprank.models.objective import needs_purchase, objective_scores
from shoprank.models.scorers import purchase_given_click
from shoprank.ranking import fastpath
from shoprank.ranking.catalog import Catalog
from shoprank.ranking.features import Lookup, OnlineFeatures
from shoprank.ranking.metrics import stage
from shoprank.ranking.query_vectors import QueryVectors
from shoprank.ranking.session import DaySoFar

logger = logging.getLogger(__name__)
LIST_COLUMNS = ("recent_items", "recent_categories")
CHECK_REQUEST = "r_" + "0" * 32  # the request id of start-up checks


@dataclass
class Scored:
    rows: np.ndarray
    scores: np.ndarray
    lookup: Lookup
    q_vec: np.ndarray
    query: str
    query_id: str
    user_id: str | None
    request_id: str
    cosine: np.ndarray
    fallback: list[str]
    user_known: bool
    query_vector: str | None = None  # where q_vec came from: cache, store, encoder (None: no query)
    _frame: Frame | None = None
    p_click: np.ndarray = field(default_factory=lambda: np.zeros(0))  # ``scores`` order by the objective


class Scoring:
    """Features, then scores, for the candidates of a request."""

    def __init__(
        self,
        catalog: Catalog,
        scorer: Any,
        features: OnlineFeatures,
        query_vectors: QueryVectors,
        fast_path: bool = True,
        objective: str = "clicks",
    ):
        self.catalog, self.scorer, self.features = catalog, scorer, features
        self.objective = objective
        self.query_vectors = query_vectors
        self.day: DaySoFar | None = None  # the shoppers' day so far (see session.py)
        self.fast: fastpath.FastScorer | None = None
        if fast_path and fastpath.supports(scorer):
            self.fast = fastpath.FastScorer(scorer, features, catalog.texts.to_numpy(), catalog.filled)

    def score(
        self,
        rows: np.ndarray,
        query: str,
        user_id: str | None,
        request_id: str,
        timings: dict[str, float],
        q_vec: np.ndarray | None = None,
        source: str | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> Scored:
        """Score ``rows`` for the request; ``q_vec`` (and its ``source``) when the caller has it.

        ``context``: the request's own inputs (the shop's impression columns); they are read
        beside the shopper's values, as the training set has them beside its labels.

        Without ``q_vec``: the process cache, else the store's vector, read with the item and
        user features (the same read; alone if they are fresh), else one encoder pass.
        """
        query_id = query_id_of(query) if query else ""
        if q_vec is None:
            q_vec = self.query_vectors.cached(query)
            source = "cache" if q_vec is not None and query_id else None
        with stage("features", timings):
            lookup = self.features.fetch(rows, user_id, query_id, want_query=q_vec is None)
        # the request's own values beside the shopper's: the context, the id an id input reads,
        # and the shopper's day so far as this process served it (the store knows past days only)
        today = self.day.values(user_id) if self.day is not None else {}
        own = {**today, **(context or {}), "user_id": user_id or ""}
        lookup = replace(lookup, user={**lookup.user, **own})
        if q_vec is None:
            with stage("embed", timings):
                q_vec, source = self.query_vectors.resolve(query, lookup.query_embedding, timings)
        item_vecs = self.catalog.vectors[rows]
        fallback = [lookup.fallback] if lookup.fallback else []
        s = Scored(
            rows,
            np.zeros(0),
            lookup,
            q_vec,
            query,
            query_id,
            user_id,
            request_id,
            item_vecs @ q_vec,
            fallback,
            lookup.user_known,
            source,
        )
        with stage("score", timings):
            s.p_click, s.scores, failed = self._predict(s)
        if failed:
            fallback.append("popularity_scores")
        return s

    def _predict(self, s: Scored) -> tuple[np.ndarray, np.ndarray, bool]:
        """(P(click), the objective's scores, whether the model failed) of ``s``'s candidates."""
        rows, buy = s.rows, None
        try:
            if self.fast is not None:
                arrays = self.fast.inputs(rows, s.lookup, s.q_vec, s.query, self.catalog.vectors[rows])
                p_click = np.asarray(self.fast.predict(arrays), dtype=np.float64)
                if needs_purchase(self.objective):
                    buy = self.fast.predict_purchase(arrays)
            else:
                p_click = np.asarray(self.scorer.predict(self.frame_of(s)), dtype=np.float64)
                if needs_purchase(self.objective):
                    buy = purchase_given_click(self.scorer, self.frame_of(s))
            failed = False
        except Exception as exc:  # a broken model must not take search down: popularity instead
            log(logger, "scorer failed; popularity fallback", error=repr(exc)[:300], level=logging.ERROR)
            p_click, buy, failed = self.catalog.popularity[rows].astype(np.float64), None, True
        return p_click, objective_scores(self.objective, p_click, buy, self.catalog.price[rows]), failed

    def rescore(self, s: Scored) -> tuple[np.ndarray, bool]:
        """This model's objective scores of a request another model scored (the same inputs:
        features, query vector, frame); and whether it failed (then popularity's)."""
        _, scores, failed = self._predict(s)
        return scores, failed

    def frame(
        self,
        rows: np.ndarray,
        lookup: Lookup,
        query: str,
        query_id: str,
        user_id: str | None,
        q_vec: np.ndarray,
        request_id: str,
    ) -> Frame:
        """The candidates as the training set has them: feature service columns, then :func:`derive`."""
        n = len(rows)
        df = lookup.items.copy()
        df.insert(0, "item_id", self.catalog.item_ids[rows])
        df["request_id"] = request_id
        df["event_timestamp"] = pd.Timestamp.now(tz="UTC")
        df["user_id"] = user_id or ""
        df["query"] = query
        df["query_id"] = query_id
        df[texts()["query"]] = normalise_query(query)  # the query_text view's value of query_id
        df["is_search"] = int(bool(query_id))
        for c in self.catalog.user_columns:
            v = lookup.user.get(c)
            if c in LIST_COLUMNS:
                v = list(v) if v is not None and not isinstance(v, float) else None
                df[c] = pd.Series([v] * n, dtype=object)
            else:
                df[c] = v if v is not None else np.nan if c not in ("region", "device") else None
        for c in request_columns():  # the shop's impression columns: the request's context
            df[c] = lookup.user.get(c)
        df["position"], df["clicked"], df["propensity"] = 0, 0, np.nan
        vectors = {
            "item_embedding": self.catalog.vectors[rows],
            "query_embedding": np.repeat(q_vec[None, :], n, axis=0),
        }
        return derive(Frame(df, vectors), texts=self.catalog.texts, filled=self.catalog.filled)

    def frame_of(self, s: Scored, idx: np.ndarray | None = None) -> Frame:
        """The (sub)set ``idx`` of a request's candidates as a training-set frame."""
        if idx is None:
            if s._frame is None:
                s._frame = self.frame(s.rows, s.lookup, s.query, s.query_id, s.user_id, s.q_vec, s.request_id)
            return s._frame
        idx = np.asarray(idx)
        sub = Lookup(s.lookup.items.iloc[idx].reset_index(drop=True), s.lookup.user, s.user_known, None)
        return self.frame(s.rows[idx], sub, s.query, s.query_id, s.user_id, s.q_vec, s.request_id)

    def prepare(self) -> None:
        """Rebuild the fast path's item arrays (after a refresh of the item table), not in a request."""
        if self.fast is not None:
            self.fast.prepare()

    def settle_fast_path(self) -> None:
        """Keep the fast path only if it agrees with the pandas path."""
        if self.fast is not None and not self.check_fast_path():
            self.fast = None

    def check_fast_path(self, user_id: str | None = None) -> bool:
        """Do the fast path's inputs and scores equal the pandas path's on a few items?"""
        fast, scorer = self.fast, self.scorer
        if fast is None:
            return False
        rows = np.arange(min(len(self.catalog), 16))
        users = [user_id] if user_id else [None, *self.features.users.index[:1].tolist()]
        try:
            for user in users:
                for query in ("warm up", ""):
                    s = self.score(rows, query, user, CHECK_REQUEST, {})
                    frame = self.frame_of(s)
                    want = scorer.pre.transform(frame, scorer.history_length)
                    got = fast.inputs(rows, s.lookup, s.q_vec, query, self.catalog.vectors[rows])
                    for key, value in want.items():
                        if key in got and not np.allclose(value, got[key], atol=1e-5):
                            raise ValueError(f"input {key!r} differs")
                    if not np.allclose(s.p_click, scorer.predict(frame), atol=1e-5):
                        raise ValueError("scores differ")
        except Exception as exc:
            log(
                logger,
                "fast path disagrees with the pandas path; using pandas",
                error=repr(exc)[:300],
                level=logging.WARNING,
            )
            return False
        return True
