"""The online ranking path: retrieve -> online features -> champion scores -> re-rank -> explain.

:class:`Ranker` wires one worker's parts and answers the endpoints by delegating to them:

- :mod:`~shoprank.ranking.loader`: the bundle loaded (champion, catalog, indexes, store, encoder)
- :mod:`~shoprank.ranking.query_vectors`: a query's vector from the cache, the store or the encoder
- :mod:`~shoprank.ranking.scoring`: the candidates' features and scores (fast or pandas path)
- :mod:`~shoprank.ranking.explanations`: the reasons of the top results
- :mod:`~shoprank.ranking.recommend`: a feed (no query) from the shopper's clicks, popular and new items
- :mod:`~shoprank.ranking.served`: the served log, its memory and the feedback on it
- :mod:`~shoprank.ranking.refresh`: the background refresh of the item features
- :mod:`~shoprank.ranking.catalog_refresh`: catalogue updates (new, changed, delisted items) applied live
- :mod:`~shoprank.ranking.responses`: the answers' JSON

A request's user id is the shop's own: each endpoint first maps it to its pseudonym
(:func:`shoprank.privacy.pseudonym`, the key of the batch's import), so features, scores,
the day so far and the feedback log only ever see pseudonyms.

Requests reach it checked (:mod:`~shoprank.ranking.requests`): it assumes a stripped,
short enough query, a valid user id, known and distinct item ids, a ``k`` within limits
and a consistent price range.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from shoprank.config import Params, Serve
from shoprank.feedback import FeedbackLog
from shoprank.inputs.frame import Frame
from shoprank.logs import log
from shoprank.privacy import load_key, pseudonym
from shoprank.ranking import metrics, recommend, responses, understand
from shoprank.ranking.catalog_refresh import CatalogRefresher
from shoprank.ranking.experiment import Arranged, OnlineExperiment
from shoprank.ranking.explanations import Explainer
from shoprank.ranking.loader import key_matches, load, runtime_of
from shoprank.ranking.metrics import stage
from shoprank.ranking.query_vectors import QueryVectors
from shoprank.ranking.refresh import Refresher
from shoprank.ranking.requests import Context, RequestRules
from shoprank.ranking.scoring import Scored, Scoring
from shoprank.ranking.served import ServedResponses, Slots
from shoprank.ranking.session import DaySoFar
from shoprank.ranking.swap import reads_catalog
from shoprank.ranking.tokens import FeedbackTokens, deployment_secret

logger = logging.getLogger(__name__)


class Ranker:
    """Everything one worker needs to answer search, recommend, rank, intent and feedback."""

    def __init__(
        self,
        bundle: Path | str,
        params: Params,
        settings: Serve | None = None,
        encoder: Any = None,
        open_store: Any = None,
    ):
        self.settings = settings if settings is not None else params.serve
        loaded = load(bundle, params, self.settings, encoder, open_store)
        self.bundle, self.manifest = loaded.bundle, loaded.manifest
        self.version, self.kind, self.scorer = loaded.manifest["version"], loaded.kind, loaded.scorer
        self.catalog, self.retriever, self.features = loaded.catalog, loaded.retriever, loaded.features
        self.feed = loaded.feed
        self.understanding = loaded.understanding
        self.reader = loaded.reader
        self.vocab = understand.vocabulary(self.catalog.items)
        self.encoder_runtime = runtime_of(loaded.encoder)
        self.query_vectors = QueryVectors(
            loaded.encoder, self.features, self.catalog.dim, self.settings.query_cache
        )
        self.scoring = self.new_scoring(self.scorer)
        self.explainer = Explainer(self.scoring)
        self.experiment = OnlineExperiment(
            params.experiment, self.bundle, self.catalog, self.settings, self.scoring, self.new_scoring
        )
        self.scoring.day = day_so_far(self.features.users, params.features.ctr_prior_strength)
        self.pseudonym_key = load_key(params.paths.secrets)  # the key the batch's shoppers were named with
        self.key_matches = key_matches(self.manifest, self.pseudonym_key)
        feedback = FeedbackLog(params.paths.feedback)
        tokens = FeedbackTokens(deployment_secret(params.paths.feedback))
        self.served = ServedResponses(
            feedback, self.version, self.catalog.item_ids, tokens, day=self.scoring.day
        )
        self.refresher = Refresher(self.features, self.prepare, self.settings.feature_ttl_s)
        self.request_rules = RequestRules(self.settings, self.catalog.row_of)
        metrics.MODEL_INFO.labels(self.version, self.manifest["champion"]["candidate"], self.kind).set(1)
        self.catalog_updates = CatalogRefresher(
            self, params.paths.catalog_updates, self.settings.catalog_refresh_s, params.features.new_item_days
        )
        self.warm()
        self.catalog_updates.start()
        log(logger, "ranker loaded", version=self.version, kind=self.kind, items=len(self.catalog))

    # ---- the parts, as attributes callers (tests, benchmarks) read or replace
    @property
    def items(self) -> Any:
        return self.catalog.items

    @property
    def item_ids(self) -> np.ndarray:
        return self.catalog.item_ids

    @property
    def row_of(self) -> dict[str, int]:
        return self.catalog.row_of

    @property
    def vectors(self) -> np.ndarray:
        return self.catalog.vectors

    @vectors.setter
    def vectors(self, value: np.ndarray) -> None:
        self.catalog.vectors = value

    @property
    def encoder(self) -> Any:
        return self.query_vectors.encoder

    @encoder.setter
    def encoder(self, value: Any) -> None:
        self.query_vectors.encoder = value

    @property
    def fast(self) -> Any:
        return self.scoring.fast

    @fast.setter
    def fast(self, value: Any) -> None:
        self.scoring.fast = value

    # ---- life cycle
    def warm(self) -> None:
        """One request's worth of work at load, so the first real request is not the slow one."""
        timings: dict[str, float] = {}
        rows = np.arange(min(len(self.catalog), 8))
        self.features.refresh_all()  # opens the store (slow the first time) and loads the item table
        try:
            s = self.scoring.score(rows, "warm up", None, new_request_id(), timings)
            self.explainer.reasons(s, np.arange(min(2, len(rows))), timings)
        except Exception as exc:  # the store may be down at start: requests then use fallbacks
            log(logger, "warm-up failed", error=repr(exc)[:300], level=logging.WARNING)
        self.scoring.settle_fast_path()
        self.query_vectors.clear()  # the warm-up queries are not real ones
        self.refresher.start()

    def prepare(self) -> None:
        """Every scorer's fast-path item arrays again, after the item table was refreshed."""
        self.scoring.prepare()
        self.experiment.prepare()

    def check_fast_path(self, user_id: str | None = None) -> bool:
        return self.scoring.check_fast_path(user_id)

    def stop_refresh(self, timeout_s: float = 5.0) -> None:
        self.refresher.stop(timeout_s)
        self.catalog_updates.stop(timeout_s)

    def refresh_catalog(self) -> dict:
        """Apply the catalogue updates that landed since the last refresh (POST /catalog/refresh)."""
        return self.catalog_updates.refresh()

    # ---- scoring, for callers that score without an endpoint
    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        return self.catalog.rows_of(item_ids)

    def score(
        self,
        rows: np.ndarray,
        query: str,
        user_id: str | None,
        request_id: str,
        timings: dict[str, float],
        q_vec: np.ndarray | None = None,
        source: str | None = None,
        context: Context | None = None,
    ) -> Scored:
        return self.scoring.score(rows, query, user_id, request_id, timings, q_vec, source, context)

    def frame_of(self, s: Scored, idx: np.ndarray | None = None) -> Frame:
        return self.scoring.frame_of(s, idx)

    def query_vector(
        self, query: str, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, str | None]:
        return self.query_vectors.vector(query, timings)

    # ---- endpoints
    @reads_catalog
    def rank(
        self,
        query: str,
        user_id: str | None,
        item_ids: Sequence[str],
        explain_top: int = 0,
        context: Context | None = None,
        shown: int = 10,
    ) -> dict:
        """Score and order the caller's candidates; reasons for the first ``explain_top``.

        ``context``: the request's values of the shop's impression columns (data.columns).
        ``shown``: the page the caller shows; only those are logged as served impressions.
        """
        user_id = self.shopper(user_id)
        rows = self.catalog.rows_of(item_ids)
        request_id = new_request_id()
        timings: dict[str, float] = {}
        s = self.scoring.score(rows, query, user_id, request_id, timings, context=context)
        got = self.arrange(s, None)
        order = got.order
        why = self.explainer.reasons(s, order[:explain_top], timings) if explain_top else None
        with stage("log", timings):
            page = order[:shown]
            self.served.remember(
                request_id, query, user_id, rows[page], got.scores[page], context, self.slots(got, shown)
            )
        if len(s.scores):
            metrics.SCORES.labels("rank").observe(float(np.mean(s.scores)))
        results = responses.ranked(self.catalog, rows, got.scores, order, why)
        self.served.sign(request_id, results[:shown])
        return {
            **responses.meta(self.version, request_id, s.fallback, timings, "rank", s.query_vector),
            **self.experiment_of(got),
            "user_known": s.user_known,
            "order": [r["item_id"] for r in results],
            "shown": min(shown, len(results)),
            "results": results,
        }

    @reads_catalog
    def search(
        self,
        query: str,
        user_id: str | None = None,
        k: int = 10,
        filters: Mapping[str, Any] | None = None,
        explain_results: bool = True,
        context: Context | None = None,
    ) -> dict:
        """Retrieve, score, re-rank (diversity, exploration slots) and explain a page of ``k``."""
        user_id = self.shopper(user_id)
        mask = self.catalog.mask(filters)
        request_id = new_request_id()
        timings: dict[str, float] = {}
        with stage("embed", timings):  # before retrieval: a query-only store read, else the encoder
            q_vec, source = self.query_vectors.vector(query, timings)
        with stage("retrieve", timings):
            got = self.retriever.retrieve(query, q_vec, self.settings.retrieve_n, mask)
        if len(got.rows) == 0:
            metrics.EMPTY_RESULTS.labels("search").inc()
            self.served.remember(request_id, query, user_id, np.zeros(0, np.int64), np.zeros(0))
            return {
                **responses.meta(self.version, request_id, [], timings, "search", source),
                "query": query,
                "user_known": None,
                "intent": understand.intent_of(self.understanding, q_vec),
                "results": [],
            }
        s = self.scoring.score(got.rows, query, user_id, request_id, timings, q_vec, source, context)
        with stage("rerank", timings):
            page = self.arrange(s, k)
        order = page.order
        why = (
            self.explainer.reasons(s, order[: self.settings.explain_top], timings) if explain_results else []
        )
        with stage("log", timings):
            self.served.remember(
                request_id, query, user_id, got.rows[order], page.scores[order], context, self.slots(page)
            )
        results = responses.searched(self.catalog, got, page.scores, order, page.explored, why)
        self.served.sign(request_id, results)
        return {
            **responses.meta(self.version, request_id, s.fallback, timings, "search", source),
            **self.experiment_of(page),
            "query": query,
            "user_known": s.user_known,
            "intent": understand.intent_of(self.understanding, q_vec),
            "candidates": int(len(got.rows)),
            "results": results,
        }

    @reads_catalog
    def recommend(
        self,
        user_id: str,
        k: int = 20,
        exclude_seen: bool = True,
        filters: Mapping[str, Any] | None = None,
        explain_results: bool = True,
        context: Context | None = None,
    ) -> dict:
        """A feed of ``k`` for the shopper: no query (see :mod:`~shoprank.ranking.recommend`)."""
        request_id, shopper = new_request_id(), pseudonym(user_id, self.pseudonym_key)
        body = recommend.recommend(
            self, shopper, k, exclude_seen, filters, explain_results, request_id, context
        )
        return {**body, "user_id": user_id}  # the caller's own id back, as it was sent

    def shopper(self, user_id: str | None) -> str | None:
        """The pseudonym of a request's user id: the only id features, scores and the log see."""
        return None if user_id is None else pseudonym(user_id, self.pseudonym_key)

    def arrange(self, s: Scored, k: int | None, feed: bool = False) -> Arranged:
        """The order shown: a page of ``k`` (diversity, exploration slots) or, for ``None``, the
        whole list; by the request's experiment arm when one runs. ``feed``: a feed's page (its
        own diversity setting). Random draws are seeded by the request id."""
        rng = np.random.default_rng(int(s.request_id[2:18], 16))
        return self.experiment.arrange(s, k, rng, feed)

    def slots(self, got: Arranged, shown: int | None = None) -> Slots:
        """What the served log records per shown slot: the arm and the logging probability."""
        arms = got.arms[:shown] if got.arms is not None else None
        return Slots(self.experiment.name, arms, got.propensity[:shown])

    def experiment_of(self, got: Arranged) -> dict[str, Any]:
        """The answer's ``experiment`` field, when one runs: its name and the request's arm
        (None when interleaved: each result then names its own arm)."""
        name = self.experiment.name
        return {"experiment": {"name": name, "arm": got.arm}} if name else {}

    def new_scoring(self, scorer: Any) -> Scoring:
        """A scoring for another model (an experiment's arm) over this worker's catalog and features."""
        return Scoring(
            self.catalog,
            scorer,
            self.features,
            self.query_vectors,
            self.settings.fast_path,
            self.settings.objective,
            self.reader,
        )

    def intent(self, query: str) -> dict:
        """The query's intent (probabilities) and the attributes it names."""
        q_vec, source = self.query_vectors.vector(query)
        if source is not None:
            metrics.QUERY_VECTORS.labels("intent", source).inc()
        answer = understand.describe(self.understanding, self.vocab, query, q_vec)
        answer["query_vector"] = source
        if self.understanding is None:
            metrics.FALLBACKS.labels("intent", "no_understanding_model").inc()
        else:
            answer["model_version"] = self.version
        return answer

    def record_feedback(
        self, request_id: str, item_id: str, event: str, token: str, position: int | None = None
    ) -> dict:
        return self.served.record(request_id, item_id, event, token, position)

    def ready(self) -> dict:
        """What readiness shows: the model, and whether the online store answers now (one probe
        per call, so a store that is back reads "ok" at once, from every worker). The store's
        error goes to the log, not to the answer."""
        return {
            "ready": True,
            "model_version": self.version,
            "kind": self.kind,
            "items": len(self.catalog),
            "online_store": "ok" if self.features.probe() else "unreachable",
            "understanding": self.understanding is not None,
            "encoder_runtime": self.encoder_runtime,
            "shoppers": "ok" if self.key_matches else "pseudonym key differs from the bundle's",
            "experiment": self.experiment.describe(),
        }


def day_so_far(users: Any, prior_strength: float) -> DaySoFar:
    """Counts of the shoppers' current day; the prior is the packaged one (each user's
    ``user_ctr_today`` at the batch's last snapshot, where nothing of a day is counted yet)."""
    stored = users.get("user_ctr_today")
    prior = float(stored.median()) if stored is not None and stored.notna().any() else 0.0
    return DaySoFar(prior, prior_strength)


def new_request_id() -> str:
    return "r_" + uuid.uuid4().hex
