"""The HTTP API of the service: a Starlette app over :class:`~shoprank.ranking.ranker.Ranker`.

serving/service.py mounts this app on the BentoML service; it also runs alone under
uvicorn (``uvicorn --factory shoprank.ranking.http:app_from_env``). It owns what
BentoML's typed APIs would hide: every bad input is a 4xx with a message naming the
field (the rules are :mod:`shoprank.ranking.requests`', checked before any work), an
API key (``$SHOPRANK_API_KEY``) guards everything but health and readiness, and each
request is timed into Prometheus histograms.

Endpoints: POST /search /recommend /rank /intent /feedback; GET /health /ready /metrics /ui.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from shoprank.config import Serve, load_params
from shoprank.logs import log
from shoprank.ranking import metrics
from shoprank.ranking.loader import freeze_heap
from shoprank.ranking.ranker import Ranker
from shoprank.ranking.requests import (
    BadRequest,
    Body,
    FeedbackBody,
    IntentBody,
    RankBody,
    RecommendBody,
    SearchBody,
    parse,
)

logger = logging.getLogger(__name__)
API_KEY_ENV = "SHOPRANK_API_KEY"


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ServiceState:
    """The ranker (once loaded) and the settings the HTTP layer needs."""

    def __init__(self, loader: Callable[[], Ranker] | None, settings: Serve, api_key: str | None):
        self.loader, self.settings, self.api_key = loader, settings, api_key or None
        self.ranker: Ranker | None = None
        self.error: str | None = None
        self.started = time.time()

    def load(self) -> None:
        if self.loader is None or self.ranker is not None:
            return
        try:
            self.ranker = self.loader()
            freeze_heap()
        except Exception as exc:  # readiness reports it; health stays up so it can be seen
            self.error = f"{type(exc).__name__}: {exc}"[:500]
            log(logger, "model failed to load", error=self.error, level=logging.ERROR)


def create_app(
    loader: Callable[[], Ranker] | None = None,
    ranker: Ranker | None = None,
    settings: Serve | None = None,
    api_key: str | None = None,
    background_load: bool = True,
) -> Starlette:
    """The app: pass a ready ``ranker``, or a ``loader`` run at startup (in a thread by default)."""
    if settings is None:
        settings = ranker.settings if ranker is not None else load_params().serve
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
    state = ServiceState(loader, settings, key)
    state.ranker = ranker

    def authorise(request: Request) -> None:
        if not state.api_key:
            return
        given = request.headers.get("x-api-key") or ""
        auth = request.headers.get("authorization") or ""
        if not given and auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        if not given:
            raise ApiError(401, "missing API key: send it in the X-API-Key header")
        if not hmac.compare_digest(given.encode(), state.api_key.encode()):
            raise ApiError(401, "wrong API key")

    def ready_ranker() -> Ranker:
        if state.ranker is None:
            raise ApiError(503, f"not ready: {state.error or 'the model is still loading'}")
        return state.ranker

    async def body_of(request: Request, model: type[Body], ranker: Ranker) -> Any:
        """The body checked against every rule of ``model`` (and the ranker's limits and catalog)."""
        raw = await request.body()
        if len(raw) > settings.max_body_bytes:
            raise ApiError(413, f"request body is {len(raw)} bytes; at most {settings.max_body_bytes}")
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(400, f"malformed JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ApiError(400, f"the body must be a JSON object, got {type(data).__name__}")
        return parse(model, data, ranker.request_rules)

    def endpoint(name: str, model: type[Body], handler: Callable[[Ranker, Any], dict]):
        async def route(request: Request) -> Response:
            t0 = time.perf_counter()
            status = 500
            try:
                authorise(request)
                ranker = ready_ranker()
                body = await body_of(request, model, ranker)
                result = await run_in_threadpool(handler, ranker, body)
                status = 200
                return JSONResponse(result)
            except ApiError as exc:
                status = exc.status
                return JSONResponse({"error": exc.message, "status": status}, status_code=status)
            except BadRequest as exc:
                status = exc.status
                return JSONResponse({"error": str(exc), "status": status}, status_code=status)
            except Exception as exc:
                log(logger, "request failed", endpoint=name, error=repr(exc)[:500], level=logging.ERROR)
                return JSONResponse({"error": "internal error", "status": 500}, status_code=500)
            finally:
                metrics.REQUEST_SECONDS.labels(name).observe(time.perf_counter() - t0)
                metrics.REQUESTS.labels(name, str(status)).inc()

        return route

    def do_search(r: Ranker, b: SearchBody) -> dict:
        filters = b.filters.model_dump() if b.filters else None
        return r.search(b.query, b.user_id, b.k, filters, b.explain, b.context)

    def do_recommend(r: Ranker, b: RecommendBody) -> dict:
        filters = b.filters.model_dump() if b.filters else None
        return r.recommend(b.user_id, b.k, b.exclude_seen, filters, b.explain, b.context)

    def do_rank(r: Ranker, b: RankBody) -> dict:
        explain = r.settings.explain_top if b.explain else 0
        return r.rank(b.query, b.user_id, b.item_ids, explain, b.context)

    def do_intent(r: Ranker, b: IntentBody) -> dict:
        return r.intent(b.query)

    def do_feedback(r: Ranker, b: FeedbackBody) -> dict:
        return r.record_feedback(b.request_id, b.item_id, b.event, b.position)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "uptime_s": round(time.time() - state.started, 1)})

    async def ready(request: Request) -> Response:
        if state.ranker is None:
            return JSONResponse(
                {"ready": False, "reason": state.error or "the model is still loading"}, status_code=503
            )
        return JSONResponse(state.ranker.ready())

    async def metrics_view(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

        registry = REGISTRY
        if metrics.MULTIPROCESS:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def page(request: Request) -> Response:
        from shoprank.ranking.page import PAGE

        return HTMLResponse(PAGE)

    async def root(request: Request) -> Response:
        return RedirectResponse("/ui")

    @asynccontextmanager
    async def lifespan(app: Starlette):
        if state.ranker is None and state.loader is not None:
            if background_load:
                threading.Thread(target=state.load, name="load-ranker", daemon=True).start()
            else:
                await run_in_threadpool(state.load)
        yield

    routes = [
        Route("/search", endpoint("search", SearchBody, do_search), methods=["POST"]),
        Route("/recommend", endpoint("recommend", RecommendBody, do_recommend), methods=["POST"]),
        Route("/rank", endpoint("rank", RankBody, do_rank), methods=["POST"]),
        Route("/intent", endpoint("intent", IntentBody, do_intent), methods=["POST"]),
        Route("/feedback", endpoint("feedback", FeedbackBody, do_feedback), methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", metrics_view, methods=["GET"]),
        Route("/service-metrics", metrics_view, methods=["GET"]),  # the same, where BentoML owns /metrics
        Route("/ui", page, methods=["GET"]),
        Route("/", root, methods=["GET"]),
    ]
    app = Starlette(routes=routes, lifespan=lifespan)

    async def not_found(request: Request, exc: Exception) -> Response:
        status = getattr(exc, "status_code", 404)
        detail = "no such endpoint" if status == 404 else "method not allowed"
        return JSONResponse(
            {"error": f"{detail}: {request.method} {request.url.path}", "status": status}, status
        )

    app.add_exception_handler(404, not_found)
    app.add_exception_handler(405, not_found)
    app.state.service = state
    return app


def app_from_env() -> Starlette:
    """uvicorn factory: the bundle ``$SHOPRANK_MODEL`` (a folder or BentoML tag; default: the latest)."""
    from shoprank.ranking.loader import load_bundle_path

    params = load_params()

    def loader() -> Ranker:
        return Ranker(load_bundle_path(os.environ.get("SHOPRANK_MODEL")), params)

    return create_app(loader, settings=params.serve)
