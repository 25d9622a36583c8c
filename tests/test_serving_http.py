"""The HTTP layer's defaults, in-process: the API key on every route, readiness without
internal text, the published OpenAPI document, the search page's headers, feedback tokens
and the log line of a server error under BentoML's log format."""

from __future__ import annotations

import io
import logging
from typing import Any, cast

import pytest
from starlette.routing import Route
from starlette.testclient import TestClient

from shoprank.config import Serve
from shoprank.ranking.http import ServiceState, create_app
from shoprank.ranking.tokens import SECRET_ENV, FeedbackTokens, deployment_secret
from tests.test_serving_requests import RecordingRanker


class ReadyRanker(RecordingRanker):
    version = "v0001"

    def ready(self) -> dict:
        return {"ready": True, "online_store": "ok"}


def _app(ranker: Any = None, key: str = "s3cret", **kw: Any):
    return create_app(ranker=cast(Any, ranker or ReadyRanker()), api_key=key, **kw)


def test_every_route_but_health_and_readiness_needs_the_key():
    app = _app()
    client = TestClient(app)
    gets = [r.path for r in app.routes if isinstance(r, Route) and "GET" in (r.methods or ())]
    assert {"/metrics", "/service-metrics", "/openapi.json"} <= set(gets)
    for path in gets:
        r = client.get(path, follow_redirects=False)
        if path in ("/health", "/ready", "/ui", "/"):  # the page is static: its calls need the key
            assert r.status_code in (200, 307), path
        else:
            assert r.status_code == 401 and "API key" in r.json()["error"], path
            assert client.get(path, headers={"X-API-Key": "s3cret"}).status_code == 200, path
            assert client.get(path, headers={"Authorization": "Bearer s3cret"}).status_code == 200, path
            assert client.get(path, headers={"X-API-Key": "s3cret\n"}).status_code == 401, path
    for path in ("/search", "/rank", "/recommend", "/intent", "/feedback", "/catalog/refresh"):
        assert client.post(path, json={}).status_code == 401, path


def test_readiness_says_not_ready_without_the_error_text(caplog):
    def broken():
        raise RuntimeError("cannot open /srv/secret/models/bundle: permission denied")

    state = ServiceState(broken, Serve(), None)
    with caplog.at_level(logging.ERROR):
        state.load()
    assert "permission denied" in caplog.text  # the details are logged
    app = create_app(loader=broken, api_key="", background_load=False)
    with TestClient(app) as client:
        r = client.get("/ready")
        assert r.status_code == 503 and r.json() == {"ready": False, "reason": "the model failed to load"}
        search = client.post("/search", json={"query": "tent"})
        assert search.status_code == 503 and "secret" not in search.text


def test_the_openapi_document_is_generated_from_the_request_models_and_settings():
    from shoprank.ranking.requests import FeedbackBody, SearchBody

    app = _app(key="", settings=Serve(max_k=7, max_candidates=50, max_query_chars=99))
    doc = TestClient(app).get("/openapi.json").json()
    posts = {r.path for r in app.routes if isinstance(r, Route) and "POST" in (r.methods or ())}
    assert posts == {p for p, ops in doc["paths"].items() if "post" in ops}
    schemas = doc["components"]["schemas"]
    search = schemas["SearchBody"]["properties"]
    assert set(search) == set(SearchBody.model_fields)
    assert search["k"]["maximum"] == 7 and search["query"]["maxLength"] == 99
    assert schemas["RankBody"]["properties"]["item_ids"]["maxItems"] == 50
    assert set(schemas["FeedbackBody"]["required"]) == {
        n for n, f in FeedbackBody.model_fields.items() if f.is_required()
    }
    assert schemas["FeedbackBody"]["additionalProperties"] is False
    assert "security" not in doc["paths"]["/health"]["get"] and doc["paths"]["/search"]["post"]["security"]


def test_the_search_page_forbids_framing_and_foreign_scripts_and_stores_no_key():
    import base64
    import hashlib

    from shoprank.ranking.page import SCRIPT

    r = TestClient(_app()).get("/ui")
    assert r.status_code == 200
    csp = r.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    digest = base64.b64encode(hashlib.sha256(SCRIPT.encode()).digest()).decode()
    assert f"script-src 'sha256-{digest}'" in csp and f"<script>{SCRIPT}</script>" in r.text
    assert r.headers["x-frame-options"] == "DENY"
    assert "localStorage" not in r.text and "sessionStorage" not in r.text and "cookie" not in r.text


class FailingRanker(ReadyRanker):
    def search(self, *args) -> dict:
        raise KeyError("item_table")


def test_a_server_error_is_logged_with_its_endpoint_type_and_trace_under_bentomls_format():
    from bentoml._internal.log import DATE_FORMAT, TRACED_LOG_FORMAT, TraceRecordFilter

    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter(TRACED_LOG_FORMAT, DATE_FORMAT))
    handler.addFilter(TraceRecordFilter())
    http_logger = logging.getLogger("shoprank.ranking.http")
    http_logger.addHandler(handler)
    try:
        r = TestClient(_app(FailingRanker(), key="")).post("/search", json={"query": "tent"})
    finally:
        http_logger.removeHandler(handler)
    assert r.status_code == 500 and r.json() == {"error": "internal error", "status": 500}
    line = out.getvalue()
    assert "request failed endpoint=search error_type=KeyError" in line
    assert "Traceback (most recent call last)" in line and "item_table" in line


def test_feedback_tokens_prove_item_request_and_position_under_one_secret(tmp_path, monkeypatch):
    monkeypatch.delenv(SECRET_ENV, raising=False)
    secret = deployment_secret(tmp_path)
    assert deployment_secret(tmp_path) == secret  # a second worker reads the first one's
    assert (tmp_path / "feedback.secret").stat().st_mode & 0o077 == 0
    tokens, other = FeedbackTokens(secret), FeedbackTokens(b"another deployment's secret")
    token = tokens.sign("r_1", "item_7", 3)
    assert FeedbackTokens(secret).position(token, "r_1", "item_7") == 3  # any worker
    assert tokens.position(token, "r_1", "item_8") is None
    assert tokens.position(token, "r_2", "item_7") is None
    assert tokens.position("4" + token[1:], "r_1", "item_7") is None  # the position is signed
    assert other.position(token, "r_1", "item_7") is None
    assert tokens.position("x", "r_1", "item_7") is None
    monkeypatch.setenv(SECRET_ENV, "a secret every replica shares")
    assert deployment_secret(tmp_path) == b"a secret every replica shares"
    with pytest.raises(ValueError):
        FeedbackTokens(b"short")


def test_the_key_guards_the_servers_own_routes_around_the_app():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse

    from shoprank.ranking.guard import RequireKey

    async def ok(request):
        return PlainTextResponse("counters")

    inner = Starlette(routes=[Route("/metrics", ok), Route("/readyz", ok), Route("/health", ok)])
    client = TestClient(RequireKey(inner, api_key="s3cret"))
    r = client.get("/metrics")
    assert r.status_code == 401 and r.json()["error"].startswith("missing API key")
    assert client.get("/metrics", headers={"X-API-Key": "nope"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).text == "counters"
    assert client.get("/readyz").status_code == 200 and client.get("/health").status_code == 200
    assert TestClient(RequireKey(inner, api_key=None)).get("/metrics").status_code == 200
