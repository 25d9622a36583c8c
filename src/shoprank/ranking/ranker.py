"""The online ranking path: retrieve -> online features -> champion scores -> re-rank -> explain.

Features are built by the same code as training and evaluation: the online store gives
the Feast feature service's values (the columns of the point-in-time training set),
:func:`shoprank.inputs.derive.derive` adds the cross features, and the champion's own
``predict`` (with its fitted preprocessing) scores every candidate in one batched call.

The query's vector comes from, in order: this process's cache; the online store (the
``query_text`` view's ``query_embedding``, computed offline by the same encoder from the
normalised text, which is what the model was trained on), read with the request's item
and user features when those need a read, else alone; one BERT pass (a query the logs
never had, or the store down). Responses name the source (``query_vector``: ``cache``,
``store`` or ``encoder``) and ``shoprank_query_vectors_total`` counts them.
"""

from __future__ import annotations

import atexit
import gc
import json
import logging
import pickle
import re
import threading
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd

from shoprank.config import Params, Serve, Text
from shoprank.feedback import BackgroundAppender, FeedbackLog
from shoprank.inputs.derive import derive
from shoprank.inputs.frame import Frame
from shoprank.logs import log
from shoprank.ranking import explain, fastpath, metrics, understand
from shoprank.ranking.bundle import MANIFEST
from shoprank.ranking.features import Lookup, OnlineFeatures, is_user_column
from shoprank.ranking.rerank import rerank

logger = logging.getLogger(__name__)
DISPLAY = ("item_id", "title", "description", "created_at")
LIST_COLUMNS = ("recent_items", "recent_categories")
ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
SERVED_MEMORY = 50_000  # recent responses kept to check and enrich feedback
REFRESH_CHUNK = 100  # items per online-store read of the background refresh (~4 ms each)
REFRESH_PAUSE_S = 0.01  # between those reads


class BadRequest(ValueError):
    """The request cannot be served as asked (HTTP 4xx); the message says why."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


@contextmanager
def stage(name: str, timings: dict[str, float]):
    t0 = time.perf_counter()
    try:
        yield
    finally:
        dt = time.perf_counter() - t0
        timings[name] = round(dt * 1000, 3)
        metrics.STAGE_SECONDS.labels(name).observe(dt)


def freeze_heap() -> None:
    """Move everything alive now (the loaded model, torch, pandas, Feast) out of the GC's view.

    Python's cyclic collector walks every tracked object on each full (generation 2)
    collection: about 600,000 once the default champion is loaded, 310 ms per full
    collection on the 2-core target, a stall of every request in flight. Full collections
    are rare (they wait for the long-lived heap to grow by a quarter) but a service that
    remembers what it served grows it. After this a full collection takes under a
    millisecond. Called once by the service after the model is loaded and warmed;
    objects created later are collected as usual.
    """
    gc.collect()
    gc.freeze()


@dataclass
class Scored:
    rows: np.ndarray
    scores: np.ndarray
    lookup: Any
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


class Ranker:
    """Everything one worker needs to answer search, rank, intent and feedback."""

    def __init__(
        self,
        bundle: Path | str,
        params: Params,
        settings: Serve | None = None,
        encoder: Any = None,
        open_store: Any = None,
    ):
        import torch

        from shoprank.models.scorers import load
        from shoprank.retrieval import HybridRetriever

        self.settings = settings if settings is not None else params.serve
        torch.set_num_threads(max(1, self.settings.torch_threads))
        self.bundle = Path(bundle)
        self.manifest = json.loads((self.bundle / MANIFEST).read_text())
        self.version = self.manifest["version"]
        self.kind, self.scorer = load(self.bundle / "scorer.pt")
        if hasattr(self.scorer, "model"):
            self.scorer.model()  # build the network now, not on the first request
        self.items = pd.read_parquet(self.bundle / "items.parquet")
        self.item_ids = self.items["item_id"].astype(str).to_numpy()
        self.row_of = {item: r for r, item in enumerate(self.item_ids)}
        self.retriever = HybridRetriever.load(self.bundle / "retrieval")
        self.vectors = self.retriever.vectors
        users = pd.read_parquet(self.bundle / "users.parquet")
        self.user_columns = [c for c in users.columns if c != "user_id"]
        self.item_columns = [c for c in self.items.columns if c not in DISPLAY and not is_user_column(c)]
        self.is_new = self.items.get("item_is_new", pd.Series(0, index=self.items.index)).fillna(0).to_numpy()
        self.category = self.items["category"].astype("string").fillna("").to_numpy(dtype=object)
        self.category_lower = np.char.lower(self.category.astype(str))
        self.price = self.items["price"].astype(float).to_numpy()
        self.popularity = (
            self.items.get("item_ctr_28d", pd.Series(0.0, index=self.items.index)).fillna(0).to_numpy()
        )
        understanding = self.bundle / "understanding.pkl"
        self.understanding = pickle.loads(understanding.read_bytes()) if understanding.is_file() else None
        self.vocab = understand.vocabulary(self.items)
        if open_store is None:
            from shoprank.ranking.features import open_online_store

            def open_store() -> Any:
                return open_online_store(params.features, self.manifest["feature_service"])

        self.features = OnlineFeatures(
            open_store,
            self.manifest["feature_service"],
            self.items,
            self.item_columns,
            users,
            self.user_columns,
            self.settings.feature_ttl_s,
            self.settings.store_retry_s,
            timeout_s=self.settings.store_timeout_s,
        )
        self.fast = None
        if fastpath.supports(self.scorer) and self.settings.fast_path:
            self.fast = fastpath.FastScorer(self.scorer, self.features)
        self.encoder = encoder if encoder is not None else self._load_encoder(params.text)
        self.encoder_runtime = runtime_of(self.encoder)
        self.feedback = FeedbackLog(params.paths.feedback)
        # served records are written by a background thread, one fsync per batch: a response
        # does not wait on the disk; clicks and purchases (acknowledged) are written in-line
        self.served_log = BackgroundAppender(self.feedback)
        atexit.register(self.served_log.flush, 5.0)  # a normal shutdown writes what is queued
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()
        self._refresh_thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._served: OrderedDict[str, dict[str, tuple[int, float, str, str | None]]] = OrderedDict()
        self._lock = threading.Lock()
        metrics.MODEL_INFO.labels(self.version, self.manifest["champion"]["candidate"], self.kind).set(1)
        self.warm()
        log(logger, "ranker loaded", version=self.version, kind=self.kind, items=len(self.items))

    def warm(self) -> None:
        """One request's worth of work at load, so the first real request is not the slow one."""
        timings: dict[str, float] = {}
        rows = np.arange(min(len(self.items), 8))
        self.features.refresh_all()  # opens the store (slow the first time) and loads the item table
        try:
            s = self.score(rows, "warm up", None, new_request_id(), timings)
            self._reasons(s, np.arange(min(2, len(rows))), timings)
        except Exception as exc:  # the store may be down at start: requests then use fallbacks
            log(logger, "warm-up failed", error=repr(exc)[:300], level=logging.WARNING)
        if self.fast is not None and not self.check_fast_path():
            self.fast = None
        self._queries.clear()  # the warm-up queries are not real ones
        if self.settings.feature_ttl_s > 0 and self._refresh_thread is None:
            self._refresh_thread = threading.Thread(
                target=self._refresher, name="feature-refresh", daemon=True
            )
            self._refresh_thread.start()

    def check_fast_path(self, user_id: str | None = None) -> bool:
        """Do the fast path's inputs and scores equal the pandas path's on a few items?"""
        fast, scorer = self.fast, cast(Any, self.scorer)
        if fast is None:
            return False
        rows = np.arange(min(len(self.items), 16))
        users = [user_id] if user_id else [None, *self.features.users.index[:1].tolist()]
        try:
            for user in users:
                for query in ("warm up", ""):
                    s = self.score(rows, query, user, new_request_id(), {})
                    frame = self.frame_of(s)
                    want = scorer.pre.transform(frame, scorer.history_length)
                    got = fast.inputs(rows, s.lookup, s.q_vec, query, self.vectors[rows])
                    for key, value in want.items():
                        if key in got and not np.allclose(value, got[key], atol=1e-5):
                            raise ValueError(f"input {key!r} differs")
                    if not np.allclose(s.scores, self.scorer.predict(frame), atol=1e-5):
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

    def _refresher(self) -> None:
        """Keep the item table fresh in the background, so requests rarely wait on the store."""
        period = max(self.settings.feature_ttl_s / 2, 0.5)
        while not self._stopping.wait(period):
            try:
                # skipped while the store is unchanged (SQLite tells); else small chunks with a
                # pause between them: a chunk holds the GIL for a few ms, not the tens of ms a
                # whole table would, so requests are not held up behind it
                self.features.refresh_all(chunk=REFRESH_CHUNK, pause_s=REFRESH_PAUSE_S, if_changed=True)
                if self.fast is not None:
                    self.fast.prepare()  # rebuild the item arrays here, not in a request
            except Exception as exc:  # logged and retried on the next tick
                log(logger, "feature refresh failed", error=repr(exc)[:300], level=logging.WARNING)

    def stop_refresh(self, timeout_s: float = 5.0) -> None:
        """Stop the background refresh (it also dies with the process: a daemon thread)."""
        self._stopping.set()
        if self._refresh_thread is not None:
            self._refresh_thread.join(timeout_s)

    def _load_encoder(self, text: Text) -> Any:
        """The query encoder: the bundle's ONNX graph (``encoder_runtime: onnx``, the default), else
        PyTorch with the packaged weights; both give the vectors the features were built with."""
        from shoprank.ranking.bundle import ENCODER_DIR
        from shoprank.text import load_encoder

        enc = self.manifest["encoder"]
        encoder: Any = None
        if self.settings.encoder_runtime == "onnx" and enc.get("onnx"):
            from shoprank.text.onnx_encoder import OnnxTextEncoder

            try:
                encoder = OnnxTextEncoder.load(self.bundle / ENCODER_DIR, threads=self.settings.torch_threads)
            except Exception as exc:  # a broken or missing graph costs speed, not answers
                log(
                    logger,
                    "ONNX query encoder unusable; encoding with PyTorch",
                    error=repr(exc)[:300],
                    level=logging.WARNING,
                )
        if encoder is None:
            settings = text.model_copy(
                update={"model_dir": enc["model_dir"], "max_length": enc["max_length"]}
            )
            encoder = load_encoder(settings, device="cpu")
        if enc.get("key") and enc["key"] != encoder.key:
            log(
                logger,
                "encoder differs from the one the features were built with",
                packaged=enc["key"],
                loaded=encoder.key,
                level=logging.WARNING,
            )
        log(logger, "query encoder loaded", runtime=runtime_of(encoder), key=encoder.key)
        return encoder

    # ---- inputs
    def cached_query(self, query: str) -> np.ndarray | None:
        """The query's vector if this process has it (the empty query: zeros), else None."""
        from shoprank.features.queries import normalise_query

        norm = normalise_query(query)
        if not norm:
            return np.zeros(self.vectors.shape[1], np.float32)
        with self._lock:
            hit = self._queries.get(norm)
            if hit is not None:
                self._queries.move_to_end(norm)
            return hit

    def _usable(self, vec: np.ndarray | None) -> np.ndarray | None:
        """A store vector that fits this model (its width, finite); None sends the query to the encoder."""
        if vec is None or vec.shape != (self.vectors.shape[1],) or not np.isfinite(vec).all():
            if vec is not None:
                log(
                    logger,
                    "stored query embedding does not fit the model; encoding",
                    shape=list(vec.shape),
                    level=logging.WARNING,
                )
            return None
        return vec

    def resolve_query(
        self, query: str, stored: np.ndarray | None, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, str]:
        """The vector of a query the cache missed: ``stored`` (from the online store) if usable,
        else one BERT pass (timed as ``encode``: responses show who paid for BERT). Cached."""
        from shoprank.features.queries import normalise_query

        norm = normalise_query(query)
        vec, source = self._usable(stored), "store"
        if vec is None:
            with stage("encode", {} if timings is None else timings):
                vec, source = self.encoder.encode([norm])[0], "encoder"
        with self._lock:
            self._queries[norm] = vec
            while len(self._queries) > self.settings.query_cache:
                self._queries.popitem(last=False)
        return vec, source

    def query_vector(
        self, query: str, timings: dict[str, float] | None = None
    ) -> tuple[np.ndarray, str | None]:
        """The query's text vector and where it came from: ``cache``, ``store`` or ``encoder``.

        The cache, else one query-only read of the online store (timed as ``query_store``),
        else one BERT pass. The empty query (a feed) is zeros, source None.
        """
        from shoprank.features.queries import query_id

        qid = query_id(query)
        if not qid:
            return np.zeros(self.vectors.shape[1], np.float32), None
        hit = self.cached_query(query)
        if hit is not None:
            return hit, "cache"
        with stage("query_store", {} if timings is None else timings):
            stored = self.features.query_vector(qid)
        return self.resolve_query(query, stored, timings)

    def check_query(self, query: str, allow_empty: bool = False) -> str:
        if not isinstance(query, str):
            raise BadRequest("query must be a string")
        if len(query) > self.settings.max_query_chars:
            raise BadRequest(
                f"query is {len(query)} characters long; at most {self.settings.max_query_chars} are allowed"
            )
        if not allow_empty and not query.strip():
            raise BadRequest("query must not be empty")
        return query.strip()

    def check_user(self, user_id: str | None) -> str | None:
        if user_id is None or user_id == "":
            return None
        if not ID.match(user_id):
            raise BadRequest("user_id must be 1-128 characters of letters, digits and _ . : -")
        return user_id

    def rows_of(self, item_ids: list[str]) -> np.ndarray:
        if not item_ids:
            raise BadRequest("item_ids must list at least one candidate")
        if len(item_ids) > self.settings.max_candidates:
            raise BadRequest(
                f"{len(item_ids)} candidates; at most {self.settings.max_candidates} per request"
            )
        if len(set(item_ids)) != len(item_ids):
            dup = sorted({i for i in item_ids if item_ids.count(i) > 1})[:5]
            raise BadRequest(f"item_ids has duplicates: {dup}")
        unknown = [i for i in item_ids if i not in self.row_of]
        if unknown:
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise BadRequest(f"unknown item_ids: {unknown[:10]}{more}", status=404)
        return np.fromiter((self.row_of[i] for i in item_ids), dtype=np.int64, count=len(item_ids))

    # ---- the shared scoring path
    def frame(
        self,
        rows: np.ndarray,
        lookup,
        query: str,
        query_id: str,
        user_id: str | None,
        q_vec: np.ndarray,
        request_id: str,
    ) -> Frame:
        """The candidates as the training set has them: feature service columns, then :func:`derive`."""
        n = len(rows)
        df = lookup.items.copy()
        df.insert(0, "item_id", self.item_ids[rows])
        df["request_id"] = request_id
        df["event_timestamp"] = pd.Timestamp.now(tz="UTC")
        df["user_id"] = user_id or ""
        df["query"] = query
        df["query_id"] = query_id
        df["is_search"] = int(bool(query_id))
        for c in self.user_columns:
            v = lookup.user.get(c)
            if c in LIST_COLUMNS:
                v = list(v) if v is not None and not isinstance(v, float) else None
                df[c] = pd.Series([v] * n, dtype=object)
            else:
                df[c] = v if v is not None else np.nan if c not in ("region", "device") else None
        df["position"], df["clicked"], df["propensity"] = 0, 0, np.nan
        derive(df)
        vectors = {
            "item_embedding": self.vectors[rows],
            "query_embedding": np.repeat(q_vec[None, :], n, axis=0),
        }
        return Frame(df, vectors)

    def score(
        self,
        rows: np.ndarray,
        query: str,
        user_id: str | None,
        request_id: str,
        timings: dict,
        q_vec: np.ndarray | None = None,
        source: str | None = None,
    ) -> Scored:
        """Score ``rows`` for the request; ``q_vec`` (and its ``source``) when the caller has it.

        Without ``q_vec``: the process cache, else the store's vector, read with the item and
        user features (the same read; alone if they are fresh), else one BERT pass.
        """
        from shoprank.features.queries import query_id as qid

        query_id = qid(query) if query else ""
        if q_vec is None:
            q_vec = self.cached_query(query)
            source = "cache" if q_vec is not None and query_id else None
        with stage("features", timings):
            lookup = self.features.fetch(rows, user_id, query_id, want_query=q_vec is None)
        if q_vec is None:
            with stage("embed", timings):
                q_vec, source = self.resolve_query(query, lookup.query_embedding, timings)
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
            self.vectors[rows] @ q_vec,
            fallback,
            lookup.user_known,
            source,
        )
        with stage("score", timings):
            try:
                if self.fast is not None:
                    arrays = self.fast.inputs(rows, lookup, q_vec, query, self.vectors[rows])
                    s.scores = np.asarray(self.fast.predict(arrays), dtype=np.float64)
                else:
                    s.scores = np.asarray(self.scorer.predict(self.frame_of(s)), dtype=np.float64)
            except Exception as exc:  # a broken model must not take search down: popularity instead
                log(logger, "scorer failed; popularity fallback", error=repr(exc)[:300], level=logging.ERROR)
                s.scores = self.popularity[rows].astype(np.float64)
                fallback.append("popularity_scores")
        return s

    def frame_of(self, s: Scored, idx: np.ndarray | None = None) -> Frame:
        """The (sub)set ``idx`` of a request's candidates as a training-set frame."""
        if idx is None:
            if s._frame is None:
                s._frame = self.frame(s.rows, s.lookup, s.query, s.query_id, s.user_id, s.q_vec, s.request_id)
            return s._frame
        idx = np.asarray(idx)
        sub = Lookup(s.lookup.items.iloc[idx].reset_index(drop=True), s.lookup.user, s.user_known, None)
        return self.frame(s.rows[idx], sub, s.query, s.query_id, s.user_id, s.q_vec, s.request_id)

    def _log_served(self, request_id: str, query: str, user_id: str | None, rows, scores) -> None:
        records = [
            {
                "event": "served",
                "request_id": request_id,
                "item_id": str(self.item_ids[r]),
                "position": i + 1,
                "score": float(s),
                "query": query,
                "user_id": user_id,
                "model_version": self.version,
            }
            for i, (r, s) in enumerate(zip(rows.tolist(), scores.tolist(), strict=True))
        ]
        if records:
            self.served_log.put(records)
        with self._lock:
            self._served[request_id] = {
                rec["item_id"]: (rec["position"], rec["score"], query, user_id) for rec in records
            }
            while len(self._served) > SERVED_MEMORY:
                self._served.popitem(last=False)

    def _meta(
        self, request_id: str, fallback: list[str], timings: dict, endpoint: str, query_vector: str | None
    ) -> dict:
        for reason in fallback:
            metrics.FALLBACKS.labels(endpoint, reason).inc()
        if query_vector is not None:
            metrics.QUERY_VECTORS.labels(endpoint, query_vector).inc()
        return {
            "request_id": request_id,
            "model_version": self.version,
            "degraded": bool(fallback),
            "fallback": ",".join(fallback) if fallback else None,
            "query_vector": query_vector,
            "timings_ms": timings,
        }

    # ---- endpoints
    def rank(self, query: str, user_id: str | None, item_ids: list[str], explain_top: int = 0) -> dict:
        query = self.check_query(query, allow_empty=True)
        user_id = self.check_user(user_id)
        rows = self.rows_of(item_ids)
        request_id = new_request_id()
        timings: dict[str, float] = {}
        s = self.score(rows, query, user_id, request_id, timings)
        order = np.argsort(-s.scores, kind="stable")
        why = self._reasons(s, order[:explain_top], timings) if explain_top else None
        with stage("log", timings):
            self._log_served(request_id, query, user_id, rows[order], s.scores[order])
        metrics.SCORES.labels("rank").observe(float(np.mean(s.scores))) if len(s.scores) else None
        results = [
            {
                "item_id": str(self.item_ids[rows[i]]),
                "score": round(float(s.scores[i]), 6),
                "position": p + 1,
                **({"reasons": why[p]} if why is not None and p < len(why) else {}),
            }
            for p, i in enumerate(order.tolist())
        ]
        return {
            **self._meta(request_id, s.fallback, timings, "rank", s.query_vector),
            "user_known": s.user_known,
            "order": [r["item_id"] for r in results],
            "results": results,
        }

    def _mask(self, filters: dict | None) -> np.ndarray | None:
        if not filters:
            return None
        mask = np.ones(len(self.items), dtype=bool)
        cat = (filters.get("category") or "").strip().lower()
        if cat:
            mask &= np.char.find(self.category_lower, cat) >= 0
        lo, hi = filters.get("price_min"), filters.get("price_max")
        if lo is not None and hi is not None and lo > hi:
            raise BadRequest(f"price_min {lo} is above price_max {hi}")
        if lo is not None:
            mask &= self.price >= lo
        if hi is not None:
            mask &= self.price <= hi
        return mask

    def _reasons(self, s: Scored, idx: np.ndarray, timings: dict) -> list[list[dict]]:
        if len(idx) == 0:
            return []
        idx = np.asarray(idx)
        with stage("explain", timings):
            try:
                if self.fast is not None:
                    sub, drops = self._fast_impacts(s, idx)
                else:
                    sub = self.frame_of(s, idx)
                    _, drops = explain.impacts(self.scorer, sub)
            except Exception as exc:  # an explanation is a nicety: never fail the request for it
                log(logger, "explanation failed", error=repr(exc)[:300], level=logging.WARNING)
                return [[] for _ in idx]
            return explain.reasons(sub, drops, s.cosine[idx])

    def _fast_impacts(self, s: Scored, idx: np.ndarray) -> tuple[Frame, dict[str, np.ndarray]]:
        """Occlusion on the fast path's arrays; a small frame of the values the reasons quote."""
        fast = self.fast
        assert fast is not None
        rows = s.rows[idx]
        items = s.lookup.items.iloc[idx].reset_index(drop=True)
        sub = Lookup(items, s.lookup.user, s.user_known, None)
        arrays = fast.inputs(rows, sub, s.q_vec, s.query, self.vectors[rows])
        _, drops = fast.occlusion(arrays, explain.GROUPS)
        wording = items.copy()
        wording["hist_category_share"] = fast.cross_arrays(rows, sub, s.query)["hist_category_share"]
        return Frame(wording, {}), drops

    def search(
        self,
        query: str,
        user_id: str | None = None,
        k: int = 10,
        filters: dict | None = None,
        explain_results: bool = True,
    ) -> dict:
        query = self.check_query(query)
        user_id = self.check_user(user_id)
        if not (1 <= k <= self.settings.max_k):
            raise BadRequest(f"k must be between 1 and {self.settings.max_k}, got {k}")
        mask = self._mask(filters)
        request_id = new_request_id()
        timings: dict[str, float] = {}
        with stage("embed", timings):  # before retrieval: a query-only store read, else BERT
            q_vec, source = self.query_vector(query, timings)
        with stage("retrieve", timings):
            got = self.retriever.retrieve(query, q_vec, self.settings.retrieve_n, mask)
        if len(got.rows) == 0:
            metrics.EMPTY_RESULTS.labels("search").inc()
            self._log_served(request_id, query, user_id, np.zeros(0, np.int64), np.zeros(0))
            return {
                **self._meta(request_id, [], timings, "search", source),
                "query": query,
                "user_known": None,
                "intent": self._intent_of(q_vec),
                "results": [],
            }
        s = self.score(got.rows, query, user_id, request_id, timings, q_vec, source)
        with stage("rerank", timings):
            rng = np.random.default_rng(int(request_id[2:18], 16))
            order, explored = rerank(
                s.scores,
                self.category[got.rows],
                self.is_new[got.rows],
                k,
                self.settings.diversity,
                self.settings.explore_share,
                rng,
            )
        why = self._reasons(s, order[: self.settings.explain_top], timings) if explain_results else []
        with stage("log", timings):
            self._log_served(request_id, query, user_id, got.rows[order], s.scores[order])
        results = []
        for p, i in enumerate(order.tolist()):
            r = int(got.rows[i])
            item = self.items.iloc[r]
            results.append(
                {
                    "position": p + 1,
                    "item_id": str(self.item_ids[r]),
                    "title": str(item["title"]),
                    "price": round(float(item["price"]), 2),
                    "category": str(item["category"]),
                    "brand": None if pd.isna(item.get("brand")) else str(item.get("brand")),
                    "score": round(float(s.scores[i]), 6),
                    "new": bool(self.is_new[r]),
                    "exploration": bool(explored[p]),
                    "retrieval": {
                        "bm25": round(float(got.bm25[i]), 3),
                        "cosine": round(float(got.cosine[i]), 3),
                    },
                    "reasons": why[p] if p < len(why) else [],
                }
            )
            metrics.SCORES.labels("search").observe(float(s.scores[i]))
        return {
            **self._meta(request_id, s.fallback, timings, "search", source),
            "query": query,
            "user_known": s.user_known,
            "intent": self._intent_of(q_vec),
            "candidates": int(len(got.rows)),
            "results": results,
        }

    def _intent_of(self, q_vec: np.ndarray) -> str | None:
        if self.understanding is None:
            return None
        probs, names = self.understanding.query_intent(q_vec.reshape(1, -1))
        return names[int(np.argmax(probs[0]))]

    def intent(self, query: str) -> dict:
        query = self.check_query(query)
        q_vec, source = self.query_vector(query)
        if source is not None:
            metrics.QUERY_VECTORS.labels("intent", source).inc()
        attributes = understand.model_attributes(self.understanding, q_vec)
        attributes.update(understand.lexical_attributes(query, self.vocab))
        if self.understanding is None:
            metrics.FALLBACKS.labels("intent", "no_understanding_model").inc()
            return {
                "query": query,
                "intent": None,
                "probabilities": {},
                "attributes": attributes,
                "degraded": True,
                "fallback": "no_understanding_model",
                "query_vector": source,
            }
        probs, names = self.understanding.query_intent(q_vec.reshape(1, -1))
        p = {n: round(float(v), 4) for n, v in zip(names, probs[0], strict=True)}
        return {
            "query": query,
            "intent": max(p, key=lambda name: p[name]),
            "probabilities": p,
            "attributes": attributes,
            "degraded": False,
            "fallback": None,
            "query_vector": source,
            "model_version": self.version,
        }

    def record_feedback(self, request_id: str, item_id: str, event: str, position: int | None = None) -> dict:
        if event not in ("click", "purchase"):
            raise BadRequest(f"event must be 'click' or 'purchase', got {event!r}")
        if not ID.match(request_id):
            raise BadRequest("request_id must be 1-128 characters of letters, digits and _ . : -")
        if item_id not in self.row_of:
            raise BadRequest(f"unknown item_id {item_id!r}", status=404)
        with self._lock:
            served = self._served.get(request_id)
        verified = served is not None
        rec: dict[str, Any] = {
            "event": event,
            "request_id": request_id,
            "item_id": item_id,
            "position": position,
            "model_version": self.version,
        }
        if served is not None:
            if item_id not in served:
                raise BadRequest(f"item {item_id} was not served in request {request_id}")
            pos, score, query, user = served[item_id]
            rec.update({"position": position or pos, "score": score, "query": query, "user_id": user})
        (event_id,) = self.feedback.append([rec])
        metrics.FEEDBACK.labels(event).inc()
        return {
            "stored": True,
            "event_id": event_id,
            "request_id": request_id,
            "item_id": item_id,
            "event": event,
            "verified": verified,
        }

    def ready(self) -> dict:
        return {
            "ready": True,
            "model_version": self.version,
            "kind": self.kind,
            "items": len(self.items),
            "online_store": "ok" if self.features.healthy() else "unreachable",
            "online_store_error": self.features.last_error,
            "understanding": self.understanding is not None,
            "encoder_runtime": self.encoder_runtime,
        }


def runtime_of(encoder: Any) -> str:
    """``onnx`` or ``torch``: what runs the query encoder (readiness reports it)."""
    return getattr(encoder, "runtime", None) or "torch"


def new_request_id() -> str:
    return "r_" + uuid.uuid4().hex


def load_bundle_path(model: str | None) -> Path:
    """A bundle folder, or the path of a BentoML model tag (``shoprank-ranker:latest`` by default)."""
    from shoprank.ranking.bundle import MODEL_NAME

    model = model or f"{MODEL_NAME}:latest"
    if Path(model).is_dir():
        return Path(model)
    import bentoml

    return Path(bentoml.models.get(model).path)
