"""The serving path: re-ranking, retrieval and explanation units, then the live service over real HTTP.

The integration tests share one tiny champion packaged into a private BentoML store
(tests/serving_fixtures.py) and one uvicorn server; a second server runs with an API
key and an unreachable online store, and `bentoml serve` is exercised once.
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

import numpy as np
import pandas as pd
import pytest
import yaml

from shoprank.artifacts import FEATURE_SERVICE
from shoprank.config import ParamsError, Serve
from shoprank.feedback import FeedbackLog
from shoprank.inputs.frame import Frame
from shoprank.ranking.explain import impacts, reasons
from shoprank.ranking.features import OnlineFeatures
from shoprank.ranking.requests import RequestRules
from shoprank.ranking.rerank import diverse_order, exploration_slots, rerank
from shoprank.retrieval import HybridRetriever
from tests import serving_fixtures
from tests.serving_fixtures import Server, free_port

serving_env = serving_fixtures.serving_env  # session fixtures shared with other serving test modules
live_server = serving_fixtures.live_server

# ---------------------------------------------------------------- units (no server)


def test_diverse_order_is_score_order_without_diversity_and_spreads_categories_with_it():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    groups = np.array(["a", "a", "a", "b"])
    assert diverse_order(scores, groups, 3, 0.0).tolist() == [0, 1, 2]
    assert diverse_order(scores, groups, 3, 0.5).tolist() == [0, 3, 1]  # b (0.6) beats a's second (0.4)


def test_exploration_slots_are_spread_and_filled_with_new_items():
    assert exploration_slots(10, 0.0) == []
    assert exploration_slots(10, 0.2) == [3, 7]
    scores = np.linspace(1.0, 0.1, 20)
    is_new = np.zeros(20, dtype=bool)
    is_new[[15, 18]] = True  # new items far down the score order
    order, explored = rerank(scores, np.array(["x"] * 20), is_new, 10, 0.0, 0.2, np.random.default_rng(0))
    assert len(order) == 10 and len(set(order.tolist())) == 10
    assert explored.tolist().count(True) == 2
    assert set(order[explored].tolist()) == {15, 18}
    assert order[~explored].tolist() == list(range(8))  # exploitation keeps the score order


def test_hybrid_retriever_fuses_bm25_and_neighbours_and_respects_the_mask(tmp_path):
    docs = ["red wool scarf", "blue cotton shirt", "red cotton shirt", "green tent", "camping stove"]
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    HybridRetriever.build(docs, vecs).save(tmp_path)
    r = HybridRetriever.load(tmp_path)
    got = r.retrieve("red shirt", vecs[3], 5)
    assert got.rows[0] == 2  # best lexical match, and fused with the neighbour side
    assert 3 in got.rows.tolist()  # the nearest neighbour of the query vector
    assert got.cosine[got.rows.tolist().index(3)] == pytest.approx(1.0, abs=1e-5)
    mask = np.array([False, True, False, True, True])
    assert set(r.retrieve("red shirt", vecs[3], 5, mask).rows.tolist()) <= {1, 3, 4}
    assert len(r.retrieve("zzz", vecs[0], 5, np.zeros(5, dtype=bool)).rows) == 0


class CtrScorer:
    """A stand-in model whose score is driven by the item's CTR."""

    def predict(self, frame: Frame, with_position: bool = False) -> np.ndarray:
        return np.nan_to_num(frame.df["item_ctr_28d"].to_numpy(float), nan=0.01) + 0.01


def test_explanations_name_the_features_that_drove_the_score():
    df = pd.DataFrame(
        {
            "item_ctr_28d": [0.2, 0.0],
            "item_impressions_28d": [100, 3],
            "brand": ["b", "b"],
            "price": [9.0, 9.0],
        }
    )
    frame = Frame(df, {"query_embedding": np.ones((2, 4), np.float32)})
    base, drops = impacts(CtrScorer(), frame)
    assert base.tolist() == pytest.approx([0.21, 0.01])
    why = reasons(frame, drops, np.array([0.5, 0.5]))
    assert why[0][0]["feature"] == "popularity" and "20.0% click rate" in why[0][0]["text"]
    assert why[1] == []  # nothing drove the second item's score


def test_loaded_service_takes_its_heap_out_of_the_collectors_view():
    import gc

    from shoprank.ranking.http import ServiceState

    class Model:  # stands in for a loaded ranker: a heap full of container objects
        def __init__(self):
            self.table = [{"item": i} for i in range(50_000)]

    state = ServiceState(Model, Serve(), None)
    gc.unfreeze()
    try:
        state.load()
        assert state.error is None and gc.get_freeze_count() >= 50_000  # the model's objects included
        frozen = gc.get_freeze_count()
        gc.collect()  # full collections leave the frozen heap alone
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


def test_the_http_layer_takes_the_serve_section_of_the_params_file(monkeypatch):
    from shoprank.ranking.http import create_app
    from tests.conftest import ROOT

    monkeypatch.setenv("SHOPRANK_PARAMS", str(ROOT / "params.yaml"))
    monkeypatch.setenv("SHOPRANK__SERVE__MAX_BODY_BYTES", "512")
    settings = create_app().state.service.settings
    assert settings.max_body_bytes == 512 and settings.max_k == Serve().max_k
    monkeypatch.setenv("SHOPRANK__SERVE__EXPLAIN_TOP", "many")
    with pytest.raises(ParamsError, match=r"serve\.explain_top.*\$SHOPRANK__SERVE__EXPLAIN_TOP"):
        create_app()


def _features(open_store, ttl=60.0, clock=None):
    items = pd.DataFrame({"item_id": ["a", "b"], "price": [1.0, 2.0], "item_ctr_28d": [0.1, 0.2]})
    users = pd.DataFrame({"user_id": ["u1"], "user_clicks": [3]})
    return OnlineFeatures(
        open_store,
        "svc",
        items,
        ["price", "item_ctr_28d"],
        users,
        ["user_clicks"],
        ttl,
        5.0,
        clock=clock or time.monotonic,
    )


def test_online_features_fall_back_to_packaged_values_when_the_store_fails():
    def broken():
        raise ConnectionError("store down")

    f = _features(broken)
    got = f.fetch(np.array([1, 0]), "u1", "")
    assert got.fallback == "online_store_unreachable"
    assert got.items["price"].tolist() == [2.0, 1.0]
    assert got.user == {"user_clicks": 3} and got.user_known
    assert not f.healthy()


def test_online_features_are_cached_for_their_ttl(monkeypatch):
    calls = []

    def fake_read(store, service, rows):
        calls.append(len(rows))
        return pd.DataFrame(
            {
                "price": [5.0] * len(rows),
                "item_ctr_28d": [0.5] * len(rows),
                "user_clicks": [7] * len(rows),
                "user_impressions_1d": [1] * len(rows),
            }
        )

    monkeypatch.setattr("shoprank.ranking.features.read_online", fake_read)
    now = [0.0]
    f = _features(lambda: object(), ttl=10.0, clock=lambda: now[0])
    first = f.fetch(np.array([0, 1]), "u1", "")
    assert (
        first.fallback is None
        and first.items["price"].tolist() == [5.0, 5.0]
        and first.user["user_clicks"] == 7
    )
    f.fetch(np.array([0, 1]), "u1", "")
    assert calls == [2]  # the second request was served from the cache
    now[0] = 11.0
    f.fetch(np.array([0]), "u1", "")
    assert calls == [2, 1]


def test_online_features_give_the_query_vector_with_the_item_read_or_alone(monkeypatch):
    """The stored query embedding rides on a needed item/user read, else one query-only read."""
    reads: list[list[dict]] = []
    vec = np.arange(4, dtype=np.float32)

    def fake_read(store, service, rows):
        reads.append(rows)
        known = [r["query_id"] == "q_known" for r in rows]
        embedding = np.empty(len(rows), object)
        embedding[:] = [np.stack([vec] * len(rows))[i] if k else None for i, k in enumerate(known)]
        return pd.DataFrame(
            {
                "price": [5.0] * len(rows),
                "item_ctr_28d": [0.5] * len(rows),
                "user_clicks": [7] * len(rows),
                "query_embedding": embedding,
            }
        )

    monkeypatch.setattr("shoprank.ranking.features.read_online", fake_read)
    now = [0.0]
    f = _features(lambda: object(), ttl=10.0, clock=lambda: now[0])
    first = f.fetch(np.array([0, 1]), None, "q_known", want_query=True)  # items stale: one read for all
    assert len(reads) == 1 and len(reads[0]) == 2 and first.store_calls == 1
    np.testing.assert_array_equal(first.query_embedding, vec)
    assert first.query_embedding.base is None  # owned: a cached vector must not pin the read's matrix
    assert f.fetch(np.array([0, 1]), None, "q_known").query_embedding is None  # not wanted: no read
    assert len(reads) == 1
    alone = f.fetch(np.array([0, 1]), None, "q_known", want_query=True)  # items fresh: the query alone
    assert len(reads) == 2 and reads[1] == [{"item_id": "", "user_id": "", "query_id": "q_known"}]
    np.testing.assert_array_equal(alone.query_embedding, vec)
    assert alone.fallback is None and alone.items["price"].tolist() == [5.0, 5.0]
    unseen = f.fetch(np.array([0]), None, "q_unseen", want_query=True)
    assert unseen.query_embedding is None and unseen.fallback is None and len(reads) == 3


def test_a_failed_query_read_opens_the_circuit_and_degrades_nothing(monkeypatch):
    tries = []

    def broken(store, service, rows):
        tries.append(rows)
        raise ConnectionError("store down")

    now = [0.0]
    f = _features(lambda: object(), ttl=10.0, clock=lambda: now[0])
    f.fetched[:] = 0.0  # items fresh
    monkeypatch.setattr("shoprank.ranking.features.read_online", broken)
    got = f.fetch(np.array([0, 1]), None, "q_known", want_query=True)
    assert got.query_embedding is None and got.fallback is None  # the encoder gives the same vector
    assert not f.healthy() and "store down" in (f.last_error or "")
    assert f.query_vector("q_known") is None and len(tries) == 1  # the circuit is open: not tried
    now[0] = 6.0  # after store_retry_s the store is tried again
    monkeypatch.setattr(
        "shoprank.ranking.features.read_online",
        lambda store, service, rows: pd.DataFrame({"query_embedding": [np.ones(4, np.float32)]}),
    )
    np.testing.assert_array_equal(f.query_vector("q_known"), np.ones(4, np.float32))
    assert f.healthy()


# ---------------------------------------------------------------- the live service


def _logged_queries(env) -> list[str]:
    """Normalised queries of the tiny logs: the online store holds their embeddings."""
    table = pd.read_parquet(Path(env.raw["paths"]["features"]) / "query_text.parquet")
    return sorted(table["query_text"].astype(str))


def _served(env, request_id: str, wait_s: float = 5.0) -> pd.DataFrame:
    """The log's records of a request; `served` records are group-committed just after the response."""
    deadline = time.monotonic() + wait_s
    while True:
        log = FeedbackLog(env.feedback_dir).read()
        got = log[log["request_id"] == request_id]
        if (got["event"] == "served").any() or time.monotonic() > deadline:
            time.sleep(0.2)  # one batch holds a whole response: give a straggler batch a moment
            log = FeedbackLog(env.feedback_dir).read()
            return log[log["request_id"] == request_id]
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.integration
def test_package_stores_the_champion_with_its_lineage(serving_env):
    info = yaml.safe_load((serving_env.bundle / "model.yaml").read_text())
    meta = info["metadata"]
    champion = json.loads((serving_env.root / "models" / "champion.json").read_text())
    assert meta["champion_version"] == champion["version"] and meta["sha256"] == champion["sha256"]
    assert meta["lineage_data_version"] == champion["lineage"]["data_version"]
    assert meta["feature_service"] == FEATURE_SERVICE
    manifest = json.loads((serving_env.bundle / "manifest.json").read_text())
    assert manifest["encoder"]["key"] and manifest["understanding"]["intent"]["accuracy"] > 0.5
    for name in ("scorer.pt", "items.parquet", "users.parquet", "understanding.pkl", "retrieval/items.faiss"):
        assert (serving_env.bundle / name).exists(), name
    # the query encoder as ONNX, checked against PyTorch on logged queries and titles at export
    export = manifest["encoder"]["onnx_export"]
    assert manifest["encoder"]["onnx"] == "encoder" and export["key"] == manifest["encoder"]["key"]
    assert export["parity_texts"] >= 16 and export["parity_max_abs_diff"] <= 1e-4
    assert (serving_env.bundle / "encoder" / "model.onnx").is_file()


@pytest.mark.slow
@pytest.mark.integration
def test_health_readiness_and_metrics(live_server):
    assert live_server.get("/health").json()["status"] == "ok"
    ready = live_server.get("/ready").json()
    assert ready["ready"] and ready["online_store"] == "ok" and ready["understanding"]
    assert ready["encoder_runtime"] == "onnx"
    live_server.post("/search", {"query": "tent"})
    text = live_server.get("/metrics").text
    for name in ("shoprank_request_seconds_bucket", "shoprank_score_bucket", "shoprank_stage_seconds"):
        assert name in text
    assert 'shoprank_requests_total{endpoint="search",status="200"}' in text


@pytest.mark.slow
@pytest.mark.integration
def test_search_returns_scored_explained_results_and_logs_what_it_served(live_server, serving_env):
    r = live_server.post("/search", {"query": "waterproof tent", "user_id": "user_000003", "k": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] is False and body["fallback"] is None and body["user_known"] is True
    assert body["intent"] in {"buy", "browse", "compare", "price", "learn"}
    results = body["results"]
    assert len(results) == 8 and [x["position"] for x in results] == list(range(1, 9))
    for x in results:
        assert {"item_id", "title", "price", "score", "reasons", "exploration"} <= set(x)
        assert 0 < x["score"] < 1
    assert any(x["reasons"] for x in results)
    assert all({"feature", "impact", "text"} <= set(reason) for x in results for reason in x["reasons"])
    served = _served(serving_env, body["request_id"]).sort_values("position")
    assert served["item_id"].tolist() == [x["item_id"] for x in results]
    assert (served["event"] == "served").all() and (served["query"] == "waterproof tent").all()
    assert (served["user_id"] == "user_000003").all() and served["model_version"].notna().all()


@pytest.mark.slow
@pytest.mark.integration
def test_search_filters_by_category_and_price(live_server, serving_env):
    r = live_server.post(
        "/search", {"query": "shoes", "k": 20, "filters": {"category": "shoes", "price_max": 80}}
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results
    assert all("shoes" in x["category"].lower() and x["price"] <= 80 for x in results)
    nothing = live_server.post("/search", {"query": "shoes", "filters": {"price_min": 1e9}}).json()
    assert nothing["results"] == []
    assert "shoprank_empty_results_total" in live_server.get("/metrics").text


@pytest.mark.slow
@pytest.mark.integration
def test_rank_scores_and_orders_the_candidates(live_server, serving_env):
    items = pd.read_parquet(serving_env.bundle / "items.parquet")["item_id"].tolist()[:100]
    r = live_server.post("/rank", {"query": "hiking boots", "user_id": "user_000007", "item_ids": items})
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["order"]) == sorted(items)
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    assert len(_served(serving_env, body["request_id"])) == 100
    again = live_server.post(
        "/rank", {"query": "hiking boots", "user_id": "user_000007", "item_ids": items[:5]}
    )
    small = {x["item_id"]: x["score"] for x in again.json()["results"]}
    full = {x["item_id"]: x["score"] for x in body["results"]}
    assert all(small[i] == pytest.approx(full[i], abs=1e-5) for i in small)  # a score is per item
    # a query the logs never had pays for a BERT pass (timed as "encode"); later ones reuse it
    new = {"query": "waterproof trail tent 7391", "item_ids": items[:5]}
    first, second = (live_server.post("/rank", new).json() for _ in range(2))
    assert "encode" in first["timings_ms"] and "encode" not in second["timings_ms"]
    assert (first["query_vector"], second["query_vector"]) == ("encoder", "cache")
    # a logged query's vector comes from the online store, no BERT pass; then from the cache
    logged = _logged_queries(serving_env)[-1]
    first, second = (
        live_server.post("/rank", {"query": logged, "item_ids": items[:5]}).json() for _ in range(2)
    )
    assert (first["query_vector"], second["query_vector"]) == ("store", "cache")
    assert "encode" not in first["timings_ms"] and first["degraded"] is False
    assert 'shoprank_query_vectors_total{endpoint="rank",source="store"}' in live_server.get("/metrics").text
    feed = live_server.post("/rank", {"item_ids": items[:3], "explain": True}).json()  # no query: a feed
    assert len(feed["results"]) == 3 and "reasons" in feed["results"][0]


@pytest.mark.slow
@pytest.mark.integration
def test_intent_gives_probabilities_and_attributes(live_server):
    body = live_server.post("/intent", {"query": "cheap red cotton t-shirt under 30"}).json()
    assert body["intent"] in body["probabilities"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["attributes"]["price_max"]["value"] == 30.0
    assert body["degraded"] is False


@pytest.mark.slow
@pytest.mark.integration
def test_feedback_is_joined_to_what_was_served(live_server, serving_env):
    search = live_server.post("/search", {"query": "jacket", "user_id": "user_000010", "k": 5}).json()
    item = search["results"][2]["item_id"]
    r = live_server.post("/feedback", {"request_id": search["request_id"], "item_id": item, "event": "click"})
    assert r.status_code == 200, r.text
    assert r.json()["stored"] and r.json()["verified"]
    buy = live_server.post(
        "/feedback", {"request_id": search["request_id"], "item_id": item, "event": "purchase"}
    )
    assert buy.status_code == 200
    events = _served(serving_env, search["request_id"])
    click = events[events["event"] == "click"].iloc[0]
    assert click["item_id"] == item and click["position"] == 3 and click["user_id"] == "user_000010"
    assert set(events["event"]) == {"served", "click", "purchase"}
    not_shown = next(
        i
        for i in pd.read_parquet(serving_env.bundle / "items.parquet")["item_id"]
        if i not in {x["item_id"] for x in search["results"]}
    )
    wrong = live_server.post(
        "/feedback", {"request_id": search["request_id"], "item_id": not_shown, "event": "click"}
    )
    assert wrong.status_code == 422 and "not served" in wrong.json()["error"]


BAD = [
    ("/search", b"{not json", 400, "malformed JSON"),
    ("/search", b"[1, 2]", 400, "JSON object"),
    ("/search", {"query": ""}, 422, "must not be empty"),
    ("/search", {"query": "   "}, 422, "must not be empty"),
    ("/search", {"query": "x" * 5000}, 422, "at most 256"),
    ("/search", {"query": 42}, 422, "query"),
    ("/search", {"query": "tent", "k": 0}, 422, "k must be between 1 and 100"),
    ("/search", {"query": "tent", "k": 1000}, 422, "k must be between"),
    ("/search", {"query": "tent", "k": "10"}, 422, "k"),
    ("/search", {"query": "tent", "k": True}, 422, "k"),
    ("/search", {"query": "tent", "colour": "red"}, 422, "colour"),
    ("/search", {"query": "tent", "filters": {"price_min": -1}}, 422, "price_min"),
    ("/search", {"query": "tent", "filters": {"price_min": 50, "price_max": 10}}, 422, "above price_max"),
    ("/search", {"query": "tent", "user_id": "bad id!"}, 422, "user_id"),
    ("/search", {}, 422, "query"),
    ("/rank", {"query": "tent", "item_ids": []}, 422, "at least one"),
    ("/rank", {"query": "tent", "item_ids": ["nope", "item_000001"]}, 404, "unknown item_ids: ['nope']"),
    ("/rank", {"query": "tent", "item_ids": ["item_000001", "item_000001"]}, 422, "duplicates"),
    ("/rank", {"query": "tent", "item_ids": "item_000001"}, 422, "item_ids"),
    ("/rank", {"query": "tent", "item_ids": [f"item_{i:06d}" for i in range(1001)]}, 422, "at most 1000"),
    ("/intent", {"query": ""}, 422, "must not be empty"),
    ("/feedback", {"request_id": "r_1", "item_id": "item_000001", "event": "view"}, 422, "event"),
    ("/feedback", {"request_id": "r_1", "item_id": "nope", "event": "click"}, 404, "unknown item_id"),
    ("/feedback", {"request_id": "r_1", "item_id": "item_000001"}, 422, "event"),
    (
        "/feedback",
        {"request_id": "r_1", "item_id": "item_000001", "event": "click", "position": 0},
        422,
        "position",
    ),
    ("/search", b"x" * 70000, 413, "at most 65536"),
]


@pytest.mark.slow
@pytest.mark.integration
@pytest.mark.parametrize(
    ("path", "body", "status", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_is_a_4xx_with_a_clear_message(live_server, path, body, status, message):
    if isinstance(body, bytes):
        r = live_server.post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = live_server.post(path, body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


class RecordingRanker:
    """Stands in for a loaded ranker: knows one item and records what it is asked to do."""

    def __init__(self, settings: Serve | None = None):
        self.settings = settings or Serve()
        self.request_rules = RequestRules(self.settings, {"item_000001"})
        self.calls: list[tuple] = []

    def _did(self, *call) -> dict:
        self.calls.append(call)
        return {"ok": True}

    def search(self, *args) -> dict:
        return self._did("search", *args)

    def rank(self, *args) -> dict:
        return self._did("rank", *args)

    def intent(self, *args) -> dict:
        return self._did("intent", *args)

    def record_feedback(self, *args) -> dict:
        return self._did("feedback", *args)


def _client(ranker: RecordingRanker):
    from starlette.testclient import TestClient

    from shoprank.ranking.http import create_app

    return TestClient(create_app(ranker=cast(Any, ranker), api_key=""))  # a stand-in with the same calls


@pytest.mark.parametrize(
    ("path", "body", "status", "message"), BAD, ids=[f"{b[0]}-{i}" for i, b in enumerate(BAD)]
)
def test_bad_input_is_refused_before_the_ranker_does_any_work(path, body, status, message):
    ranker = RecordingRanker()
    if isinstance(body, bytes):
        r = _client(ranker).post(path, content=body, headers={"Content-Type": "application/json"})
    else:
        r = _client(ranker).post(path, json=body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]
    assert ranker.calls == []


def test_valid_requests_reach_the_ranker_checked_and_stripped():
    ranker = RecordingRanker()
    client = _client(ranker)
    search = {"query": "  tent ", "user_id": "u_1", "k": 5, "filters": {"price_max": 80}}
    assert client.post("/search", json=search).status_code == 200
    assert client.post("/rank", json={"item_ids": ["item_000001"], "explain": True}).status_code == 200
    assert client.post("/intent", json={"query": " boots "}).status_code == 200
    feedback = {"request_id": "r_1", "item_id": "item_000001", "event": "click"}
    assert client.post("/feedback", json=feedback).status_code == 200
    assert ranker.calls == [
        ("search", "tent", "u_1", 5, {"category": None, "price_min": None, "price_max": 80.0}, True),
        ("rank", "", None, ["item_000001"], ranker.settings.explain_top),
        ("intent", "boots"),
        ("feedback", "r_1", "item_000001", "click", None),
    ]


def test_request_limits_are_the_serving_settings():
    ranker = RecordingRanker(Serve(max_k=5, max_query_chars=8, max_candidates=1))
    client = _client(ranker)
    default_k = client.post("/search", json={"query": "tent"})  # the default k (10) is checked too
    assert default_k.status_code == 422 and "k must be between 1 and 5, got 10" in default_k.json()["error"]
    long = client.post("/intent", json={"query": "x" * 9})
    assert long.status_code == 422 and "at most 8" in long.json()["error"]
    many = client.post("/rank", json={"item_ids": ["item_000001", "item_000002"]})
    assert many.status_code == 422 and "at most 1 per request" in many.json()["error"]
    assert client.post("/search", json={"query": "tent", "k": 5}).status_code == 200
    assert ranker.calls == [("search", "tent", None, 5, None, True)]


@pytest.mark.slow
@pytest.mark.integration
def test_unknown_routes_and_methods_are_4xx(live_server):
    assert live_server.get("/nope").status_code == 404
    assert live_server.get("/search").status_code == 405
    assert "error" in live_server.get("/search").json()


@pytest.mark.slow
@pytest.mark.integration
def test_search_page_in_headless_chromium_records_a_click(live_server, serving_env):
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        pytest.skip("chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=ChromeService(driver_path), options=opts)
    try:
        driver.get(live_server.url + "/ui")
        box = driver.find_element(By.ID, "q")
        box.send_keys("waterproof tent", Keys.ENTER)
        wait = WebDriverWait(driver, 30)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".result a.title")))
        links = driver.find_elements(By.CSS_SELECTOR, ".result a.title")
        assert links and driver.find_elements(By.CSS_SELECTOR, ".result .score")
        assert driver.find_elements(By.CSS_SELECTOR, ".reasons li")
        request_id, item_id = links[0].get_attribute("data-request"), links[0].get_attribute("data-item")
        links[0].click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".result .clicked"), "click recorded"))
    finally:
        driver.quit()
    events = _served(serving_env, request_id)
    clicks = events[events["event"] == "click"]
    assert clicks["item_id"].tolist() == [item_id]


@pytest.mark.slow
@pytest.mark.integration
def test_api_key_and_online_store_down_fallback(serving_env):
    """One server with an API key and an unreachable online store (Redis on a closed port)."""
    params = serving_env.params_variant(
        "store-down", online_store="redis", redis_url=f"127.0.0.1:{free_port()}"
    )
    env = serving_env.env(SHOPRANK_PARAMS=str(params), SHOPRANK_API_KEY="s3cret")
    server = Server(env, serving_env.root).start()
    try:
        assert server.get("/health").status_code == 200  # health and readiness need no key
        ready = server.get("/ready").json()
        assert ready["ready"] and ready["online_store"] == "unreachable"
        for path, body in (
            ("/search", {"query": "tent"}),
            ("/rank", {"item_ids": ["item_000001"]}),
            ("/intent", {"query": "tent"}),
            ("/feedback", {}),
        ):
            r = server.post(path, body)
            assert r.status_code == 401 and "API key" in r.json()["error"], path
        assert server.post("/search", {"query": "tent"}, headers={"X-API-Key": "wrong"}).status_code == 401
        key = {"X-API-Key": "s3cret"}
        r = server.post("/search", {"query": "tent", "user_id": "user_000003", "k": 5}, headers=key)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] is True and body["fallback"] == "online_store_unreachable"
        assert len(body["results"]) == 5 and body["user_known"] is True  # the packaged user table
        logged = _logged_queries(serving_env)[0]  # the store has its vector, but is down: BERT
        r = server.post("/search", {"query": logged, "k": 5}, headers=key)
        assert r.status_code == 200 and r.json()["query_vector"] == "encoder", r.text
        items = [x["item_id"] for x in body["results"]]
        ranked = server.post(
            "/rank", {"query": "tent", "item_ids": items}, headers={"Authorization": "Bearer s3cret"}
        )
        assert ranked.status_code == 200 and ranked.json()["degraded"] is True
        assert ranked.json()["query_vector"] == "cache"  # encoded by the search above
        intent = server.post("/intent", {"query": _logged_queries(serving_env)[1]}, headers=key)
        assert intent.status_code == 200 and intent.json()["query_vector"] == "encoder"
        assert (
            'shoprank_fallback_total{endpoint="search",reason="online_store_unreachable"}'
            in server.get("/metrics", headers=key).text
        )
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_bentoml_serve_and_build(serving_env):
    """The BentoML service itself: `bentoml serve` on the packaged model, and `bentoml build`."""
    import subprocess

    from tests.conftest import ROOT
    from tests.serving_fixtures import VENV_BIN

    env = serving_env.env(SHOPRANK_MODEL=serving_env.tag)
    server = Server(env, ROOT, bentoml=True, log_dir=serving_env.root).start()
    try:
        assert server.get("/readyz").status_code == 200
        r = server.post("/search", {"query": "tent", "k": 3})
        assert r.status_code == 200 and len(r.json()["results"]) == 3
        assert server.post("/search", {"query": ""}).status_code == 422
        assert "shoprank_request_seconds" in server.get("/metrics").text
        assert server.get("/ui").status_code == 200
    finally:
        server.stop()
    built = subprocess.run(
        [str(VENV_BIN / "bentoml"), "build", "-f", "serving/bentofile.yaml", ".", "-o", "tag"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, built.stderr[-3000:]
    bentos = list((serving_env.bentoml_home / "bentos" / "shoprank").glob("*/bento.yaml"))
    assert bentos and serving_env.tag in bentos[0].read_text()


@pytest.mark.slow
@pytest.mark.integration
def test_acknowledged_feedback_survives_a_crash_and_restart(live_server, serving_env):
    search = live_server.post("/search", {"query": "backpack", "k": 5}).json()
    items = [x["item_id"] for x in search["results"]]

    def click(item):
        r = live_server.post(
            "/feedback", {"request_id": search["request_id"], "item_id": item, "event": "click"}
        )
        return r.json()["event_id"] if r.status_code == 200 else None

    with ThreadPoolExecutor(5) as pool:
        acked = [e for e in pool.map(click, items * 4) if e]
    assert len(acked) == 20
    live_server.kill()  # SIGKILL: no shutdown, no flush
    logged = set(FeedbackLog(serving_env.feedback_dir).read()["event_id"])
    assert set(acked) <= logged
    live_server.start()
    r = live_server.post(
        "/feedback", {"request_id": search["request_id"], "item_id": items[0], "event": "purchase"}
    )
    assert r.status_code == 200 and r.json()["verified"] is False  # the new process never served it
    log = FeedbackLog(serving_env.feedback_dir).read()
    assert set(acked) <= set(log["event_id"]) and r.json()["event_id"] in set(log["event_id"])


@pytest.mark.slow
@pytest.mark.integration
def test_fast_path_inputs_and_scores_equal_the_evaluation_path(serving_env, monkeypatch):
    """The array hot path against derive + the champion's own preprocessing and predict."""
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "0")  # no background refresher in the test process
    ranker = Ranker(serving_env.bundle, load_params(serving_env.params_file))
    assert ranker.fast is not None, "the start-up check rejected the fast path"
    rows = np.arange(min(60, len(ranker.items)))
    for user in ("user_000003", "user_unknown", None):
        for query in ("waterproof hiking boots", "", "hiking boots under 80"):
            s = ranker.score(rows, query, user, "r_" + "0" * 32, {})
            frame = ranker.frame_of(s)
            want = ranker.scorer.pre.transform(frame, ranker.scorer.history_length)
            got = ranker.fast.inputs(rows, s.lookup, s.q_vec, query, ranker.vectors[rows])
            for key, value in want.items():
                np.testing.assert_allclose(got[key], value, atol=1e-5, err_msg=f"{key} {user} {query!r}")
            np.testing.assert_allclose(s.scores, ranker.scorer.predict(frame), atol=1e-5)
            idx = np.arange(6)  # explanations: occlusion on arrays == occlusion on the frame
            _, want_drops = impacts(ranker.scorer, ranker.frame_of(s, idx))
            _, got_drops = ranker.explainer.fast_impacts(s, idx)
            for group, drop in want_drops.items():
                np.testing.assert_allclose(got_drops.get(group, 0.0 * drop), drop, atol=1e-5, err_msg=group)


class CountingEncoder:
    """The ranker's encoder, counting the texts it is asked to embed."""

    def __init__(self, encoder):
        self.encoder, self.texts = encoder, []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return self.encoder.encode(texts)


@pytest.mark.slow
@pytest.mark.integration
def test_onnx_and_torch_query_encoders_agree_and_a_broken_graph_falls_back(serving_env, monkeypatch, caplog):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    params = load_params(serving_env.params_file)
    queries = ["waterproof trail tent 7391", "x", "a gift for my sister who likes hiking and coffee"]
    onnx = Ranker(serving_env.bundle, params).encoder
    monkeypatch.setenv("SHOPRANK__SERVE__ENCODER_RUNTIME", "torch")
    torch_ranker = Ranker(serving_env.bundle, load_params(serving_env.params_file))
    assert torch_ranker.encoder_runtime == "torch" and torch_ranker.ready()["encoder_runtime"] == "torch"
    np.testing.assert_allclose(onnx.encode(queries), torch_ranker.encoder.encode(queries), atol=1e-5)
    monkeypatch.setenv("SHOPRANK__SERVE__ENCODER_RUNTIME", "onnx")
    params = load_params(serving_env.params_file)
    bundle = serving_env.root / "broken-bundle"
    shutil.copytree(serving_env.bundle, bundle)
    (bundle / "encoder" / "model.onnx").write_bytes(b"not a graph")
    with caplog.at_level(logging.WARNING):
        broken = Ranker(bundle, params)
    assert broken.encoder_runtime == "torch" and "ONNX query encoder unusable" in caplog.text
    np.testing.assert_array_equal(broken.encoder.encode(queries), torch_ranker.encoder.encode(queries))


@pytest.mark.slow
@pytest.mark.integration
def test_query_vectors_come_from_the_cache_the_store_then_the_encoder(serving_env, monkeypatch):
    """A logged query is served with the store's vector (no BERT pass); an unseen one is encoded;
    the store's vector is the encoder's (train/serve consistency: the model was trained on it)."""
    from shoprank.config import load_params
    from shoprank.features.queries import normalise_query, query_id
    from shoprank.ranking.ranker import Ranker

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "600")  # items stay fresh: query-only reads
    params = load_params(serving_env.params_file)
    ranker = Ranker(serving_env.bundle, params)
    assert ranker.encoder_runtime == "onnx"  # the default: the bundle's exported graph
    counting = ranker.encoder = CountingEncoder(ranker.encoder)
    logged = _logged_queries(serving_env)
    assert len(logged) >= 6
    rows = np.arange(min(50, len(ranker.items)))
    items = ranker.item_ids[rows].tolist()

    # the store and the encoder agree on logged queries' vectors
    stored = np.stack([ranker.features.query_vector(query_id(q)) for q in logged[:20]])
    encoded = counting.encoder.encode([normalise_query(q) for q in logged[:20]])
    cosine = (stored * encoded).sum(1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(encoded, axis=1)
    assert cosine.min() > 0.9999, cosine.min()

    # rank: the items are fresh, so the query is read alone; then the process cache
    first = ranker.rank(logged[0].upper() + "  ", None, items)  # normalised like the store's key
    again = ranker.rank(logged[0], "user_000003", items)
    assert (first["query_vector"], again["query_vector"]) == ("store", "cache") and counting.texts == []
    assert first["degraded"] is False and "encode" not in first["timings_ms"]
    # the same vector (and so the same scores) as a BERT pass would have given
    ranker.query_vectors.clear()
    by_store = ranker.score(rows, logged[1], "user_000003", "r_" + "0" * 32, {})
    ranker.query_vectors.clear()
    monkeypatch.setattr(ranker.features, "query_vector", lambda qid: None)
    by_encoder = ranker.score(rows, logged[1], "user_000003", "r_" + "0" * 32, {})
    monkeypatch.undo()
    assert (by_store.query_vector, by_encoder.query_vector) == ("store", "encoder")
    np.testing.assert_allclose(by_store.scores, by_encoder.scores, atol=1e-5)
    counting.texts.clear()

    # the vector rides on a store read the items need anyway (stale items)
    ranker.features.fetched[rows] = -np.inf
    stale = ranker.rank(logged[2], None, items)
    assert stale["query_vector"] == "store" and counting.texts == []

    # search reads the query alone before retrieval; intent too
    assert ranker.search(logged[3], k=5)["query_vector"] == "store"
    assert ranker.intent(logged[4])["query_vector"] == "store"
    assert counting.texts == []

    # a query the logs never had: one BERT pass, then cached
    unseen = "waterproof trail tent 7391"
    assert ranker.rank(unseen, None, items)["query_vector"] == "encoder"
    assert ranker.search(unseen, k=5)["query_vector"] == "cache"
    assert counting.texts == [unseen]
    feed = ranker.rank("", None, items)
    assert feed["query_vector"] is None and counting.texts == [unseen]


@pytest.mark.slow
@pytest.mark.integration
def test_store_down_query_vectors_come_from_the_encoder(serving_env, monkeypatch):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    def down():
        raise ConnectionError("online store down")

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "600")
    ranker = Ranker(serving_env.bundle, load_params(serving_env.params_file), open_store=down)
    counting = ranker.encoder = CountingEncoder(ranker.encoder)
    logged = _logged_queries(serving_env)
    items = ranker.item_ids[:20].tolist()
    ranked = ranker.rank(logged[0], "user_000003", items)
    assert ranked["query_vector"] == "encoder" and ranked["fallback"] == "online_store_unreachable"
    assert ranker.search(logged[1], k=5)["query_vector"] == "encoder"
    assert ranker.intent(logged[2])["query_vector"] == "encoder"
    assert counting.texts == logged[:3]


@pytest.mark.slow
@pytest.mark.integration
def test_item_features_are_refreshed_in_the_background(serving_env, monkeypatch):
    """With a TTL, a thread re-reads the item table every TTL/2: requests find items fresh."""
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "1")  # refresh every 0.5 s
    ranker = Ranker(serving_env.bundle, load_params(serving_env.params_file))
    try:
        assert ranker.refresher.thread is not None and ranker.refresher.thread.is_alive()
        ranker.features.fetched[:] = -np.inf  # every item stale; no request follows
        deadline = time.monotonic() + 30
        while np.isinf(ranker.features.fetched).any() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert np.isfinite(ranker.features.fetched).all(), "the background refresh did not re-read the items"
        s = ranker.score(np.arange(min(20, len(ranker.items))), "", None, "r_" + "0" * 32, {})
        assert s.lookup.store_calls == 0  # fresh: the request did not wait on the store
    finally:
        ranker.stop_refresh()
    assert not ranker.refresher.thread.is_alive()
    # a refresh that finds the store unchanged does not make the item arrays be rebuilt;
    # a value that differs from the store's is replaced, and the arrays follow
    features = ranker.features
    features.refresh_all()
    version = features.version
    assert features.refresh_all() == len(ranker.items) and features.version == version
    price = features.values["price"].copy()
    features.values.loc[0, "price"] = -1.0
    features.refresh_all()
    assert features.version > version
    pd.testing.assert_series_equal(features.values["price"], price)

    # the background refresh skips an unchanged SQLite store, and re-reads after a commit to it
    import sqlite3

    assert features.refresh_all(if_changed=True) == 0  # the full refresh above saw this state
    features.values.loc[0, "price"] = -1.0  # (a local edit the store does not know about)
    with sqlite3.connect(features.store().path) as conn:  # any commit by another connection
        conn.execute("CREATE TABLE touched (x)")
        conn.execute("DROP TABLE touched")
    assert features.refresh_all(if_changed=True) == len(ranker.items)
    pd.testing.assert_series_equal(features.values["price"], price)
    assert features.refresh_all(if_changed=True) == 0
