"""The HTTP layer: its settings, the loaded model's heap, and request validation.

Each bad request is checked twice: in-process against a stand-in ranker that records its
calls (refused before any work), and on the live service (the session's ``live_server``).
"""

from __future__ import annotations

from typing import Any, cast

import pytest

from shoprank.config import ParamsError, Serve
from shoprank.ranking.requests import RequestRules


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


CLICK = {"request_id": "r_1", "item_id": "item_000001", "event": "click", "feedback_token": "1.x"}
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
    ("/recommend", {}, 422, "user_id"),
    ("/recommend", {"user_id": "bad id!"}, 422, "user_id must be 1-128 characters"),
    ("/recommend", {"user_id": "u" * 129}, 422, "user_id must be 1-128 characters"),
    ("/recommend", {"user_id": "u_1", "k": 0}, 422, "k must be between 1 and 100, got 0"),
    ("/recommend", {"user_id": "u_1", "k": 101}, 422, "k must be between 1 and 100, got 101"),
    ("/recommend", {"user_id": "u_1", "query": "tent"}, 422, "query"),
    ("/recommend", {"user_id": "u_1", "exclude_seen": "no"}, 422, "exclude_seen"),
    ("/recommend", {"user_id": "u_1", "filters": {"price_min": 50, "price_max": 10}}, 422, "above price_max"),
    ("/rank", {"query": "tent", "item_ids": []}, 422, "at least one"),
    ("/rank", {"query": "tent", "item_ids": ["nope", "item_000001"]}, 404, "unknown item_ids: ['nope']"),
    ("/rank", {"query": "tent", "item_ids": ["item_000001", "item_000001"]}, 422, "duplicates"),
    ("/rank", {"query": "tent", "item_ids": "item_000001"}, 422, "item_ids"),
    ("/rank", {"item_ids": ["item_000001"], "shown": 0}, 422, "shown must be between 1 and"),
    ("/rank", {"item_ids": ["item_000001"], "shown": 101}, 422, "shown must be between 1 and 100"),
    ("/rank", {"query": "tent", "item_ids": [f"item_{i:06d}" for i in range(1001)]}, 422, "at most 1000"),
    ("/intent", {"query": ""}, 422, "must not be empty"),
    ("/feedback", {**CLICK, "event": "view"}, 422, "event"),
    ("/feedback", {**CLICK, "item_id": "nope"}, 404, "unknown item_id"),
    ("/feedback", {k: v for k, v in CLICK.items() if k != "event"}, 422, "event"),
    ("/feedback", {**CLICK, "position": 0}, 422, "position"),
    ("/feedback", {k: v for k, v in CLICK.items() if k != "feedback_token"}, 422, "feedback_token"),
    ("/feedback", {**CLICK, "position": 10**20}, 422, "position must be between 1 and 1000"),
    ("/feedback", {**CLICK, "request_id": "r_1\n"}, 422, "request_id must be 1-128 characters"),
    ("/recommend", {"user_id": "u_1\n"}, 422, "user_id must be 1-128 characters"),
    ("/search", {"query": "tent", "filters": {"category": "c" * 300}}, 422, "filters.category"),
    ("/search", {"query": "tent", "context": {f"c{i}": 1 for i in range(65)}}, 422, "context"),
    ("/search", b"x" * 70000, 413, "at most 65536"),
    # bodies built to break the parser or the text handling: 400, never a 500
    ("/search", b"[" * 30000 + b"]" * 30000, 400, "nested deeper than 8"),
    ("/search", b'{"query": "tent", "filters": ' + b'{"a": ' * 9 + b"1" + b"}" * 10, 400, "nested deeper"),
    ("/search", b'{"query": "tent", "k": ' + b"9" * 5000 + b"}", 400, "digits"),
    ("/feedback", b'{"request_id": "r_1", "position": -' + b"1" * 4400 + b"}", 400, "digits"),
    ("/search", b'{"query": "\\ud800"}', 400, "lone surrogate"),
    ("/search", b'{"query": "tent", "user_id": "\\udfff"}', 400, "lone surrogate"),
    ("/search", b'{"\\ud800": 1}', 400, "lone surrogate"),
    ("/search", b'{"query": "tent", "filters": {"price_max": NaN}}', 400, "NaN is not a JSON number"),
    ("/search", b'{"query": "tent", "filters": {"price_max": 1e999}}', 400, "out of range"),
    ("/search", b'{"query": "\xff\xfe"}', 400, "malformed JSON"),
    ("/search", b"", 400, "malformed JSON"),
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

    def recommend(self, *args) -> dict:
        return self._did("recommend", *args)

    def intent(self, *args) -> dict:
        return self._did("intent", *args)

    def record_feedback(self, *args) -> dict:
        return self._did("feedback", *args)

    def refresh_catalog(self) -> dict:
        return self._did("catalog_refresh")


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
    assert client.post("/recommend", json={"user_id": "u_1"}).status_code == 200
    feed = {"user_id": "new_shopper", "k": 3, "exclude_seen": False, "filters": {"category": "shoes"}}
    assert client.post("/recommend", json=feed).status_code == 200
    assert client.post("/feedback", json=CLICK).status_code == 200
    assert ranker.calls == [
        ("search", "tent", "u_1", 5, {"category": None, "price_min": None, "price_max": 80.0}, True, {}),
        ("rank", "", None, ["item_000001"], ranker.settings.explain_top, {}, 10),
        ("intent", "boots"),
        ("recommend", "u_1", 20, True, None, True, {}),
        (
            "recommend",
            "new_shopper",
            3,
            False,
            {"category": "shoes", "price_min": None, "price_max": None},
            True,
            {},
        ),
        ("feedback", "r_1", "item_000001", "click", "1.x", None),
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
    feed = client.post("/recommend", json={"user_id": "u_1"})  # so is a feed's (20)
    assert feed.status_code == 422 and "k must be between 1 and 5, got 20" in feed.json()["error"]
    assert ranker.calls == [("search", "tent", None, 5, None, True, {})]


@pytest.mark.slow
@pytest.mark.integration
def test_unknown_routes_and_methods_are_4xx(live_server):
    assert live_server.get("/nope").status_code == 404
    assert live_server.get("/search").status_code == 405
    assert "error" in live_server.get("/search").json()
