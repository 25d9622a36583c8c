"""The HTTP API of the service: a Starlette app over :class:`~shoprank.ranking.ranker.Ranker`.

serving/service.py mounts this app on the BentoML service; it also runs alone under
uvicorn (``uvicorn --factory shoprank.ranking.http:app_from_env``). It owns what
BentoML's typed APIs would hide: every bad input is a 4xx with a message naming the
field (the body is read and decoded within bounds by :mod:`shoprank.ranking.body`, then
checked by the rules of :mod:`shoprank.ranking.requests`, before any work), an API key
(``$SHOPRANK_API_KEY``) guards every route but health, readiness and the static search
page (metrics and the OpenAPI document included), and each request is timed into
Prometheus histograms. A failure that is not the request's is a 500 whose log line names
the endpoint, the exception type and its traceback.

Endpoints: POST /search /recommend /rank /intent /feedback /catalog/refresh; GET /health /ready
/metrics /openapi.json /ui.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from shoprank.config import Serve, load_params
from shoprank.logs import log
from shoprank.ranking import body as bounded
from shoprank.ranking import metrics
from shoprank.ranking.guard import key_error
from shoprank.ranking.loader import freeze_heap
from shoprank.ranking.openapi import document
from shoprank.ranking.page import PAGE, PAGE_HEADERS
from shoprank.ranking.ranker import Ranker
from shoprank.ranking.reload import Reloader
from shoprank.ranking.requests import (
    BadRequest,
    Body,
    CatalogRefreshBody,
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
        self.reloader: Reloader | None = None  # started once a ranker serves
        self.error: str | None = None
        self.started = time.time()

    def load(self) -> None:
        if self.loader is None or self.ranker is not None:
            return
        try:
            self.ranker = self.loader()
            freeze_heap()
            if self.reloader is not None:
                self.reloader.start()
        except Exception as exc:  # readiness says so (the text is for the log); health stays up
            self.error = f"{type(exc).__name__}: {exc}"[:500]
            log(logger, "model failed to load", error=self.error, level=logging.ERROR, exc_info=True)


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
        if (error := key_error(request.headers, state.api_key)) is not None:
            raise ApiError(401, error)

    def not_ready() -> str:
        return "the model failed to load" if state.error else "the model is still loading"

    def ready_ranker() -> Ranker:
        if state.ranker is None:
            raise ApiError(503, f"not ready: {not_ready()}")
        return state.ranker

    async def body_of(request: Request, model: type[Body], ranker: Ranker) -> Any:
        """The body read and decoded within bounds, then checked against every rule of ``model``."""
        try:
            raw = await bounded.read(
                request.stream(), request.headers.get("content-length"), settings.max_body_bytes
            )
            data = bounded.decode(raw)
        except bounded.BadBody as exc:
            raise ApiError(exc.status, str(exc)) from None
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
                log(
                    logger,
                    "request failed",
                    level=logging.ERROR,
                    exc_info=True,
                    endpoint=name,
                    error_type=type(exc).__name__,
                    error=repr(exc)[:500],
                )
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
        return r.rank(b.query, b.user_id, b.item_ids, explain, b.context, b.shown)

    def do_intent(r: Ranker, b: IntentBody) -> dict:
        return r.intent(b.query)

    def do_feedback(r: Ranker, b: FeedbackBody) -> dict:
        return r.record_feedback(b.request_id, b.item_id, b.event, b.feedback_token, b.position)

    def do_catalog_refresh(r: Ranker, b: CatalogRefreshBody) -> dict:
        return r.refresh_catalog()

    bodies: dict[str, tuple[type[Body], str]] = {
        "/search": (SearchBody, "a query -> ranked, explained results"),
        "/recommend": (RecommendBody, "a shopper, no query -> a feed"),
        "/rank": (RankBody, "a query, a user and candidate ids -> those ids in ranked order"),
        "/intent": (IntentBody, "a query -> its intent and the product attributes it names"),
        "/feedback": (FeedbackBody, "a click or purchase on a served result, with its feedback token"),
        "/catalog/refresh": (CatalogRefreshBody, "apply the catalogue updates that landed (this worker)"),
    }

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok", "uptime_s": round(time.time() - state.started, 1)})

    async def ready(request: Request) -> Response:
        if state.ranker is None:
            return JSONResponse({"ready": False, "reason": not_ready()}, status_code=503)
        return JSONResponse(await run_in_threadpool(state.ranker.ready))  # it probes the store

    async def metrics_view(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

        registry = REGISTRY
        if metrics.MULTIPROCESS:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        return PlainTextResponse(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE, headers=PAGE_HEADERS)

    async def openapi(request: Request) -> Response:
        from shoprank import __version__

        version = state.ranker.version if state.ranker is not None else __version__
        return JSONResponse(document(bodies, settings, version))

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

    def keyed(view: Callable[[Request], Any]) -> Callable[[Request], Any]:
        """``view`` behind the API key (the POST endpoints check it in :func:`endpoint`)."""

        async def guarded(request: Request) -> Response:
            try:
                authorise(request)
            except ApiError as exc:
                return JSONResponse({"error": exc.message, "status": exc.status}, status_code=exc.status)
            return await view(request)

        return guarded

    handlers: dict[str, Callable[[Ranker, Any], dict]] = {
        "/search": do_search,
        "/recommend": do_recommend,
        "/rank": do_rank,
        "/intent": do_intent,
        "/feedback": do_feedback,
        "/catalog/refresh": do_catalog_refresh,
    }
    routes = [
        Route(path, endpoint(path[1:], bodies[path][0], handler), methods=["POST"])
        for path, handler in handlers.items()
    ]
    routes += [
        Route("/health", health, methods=["GET"]),
        Route("/ready", ready, methods=["GET"]),
        Route("/metrics", keyed(metrics_view), methods=["GET"]),
        # the same, where BentoML owns /metrics
        Route("/service-metrics", keyed(metrics_view), methods=["GET"]),
        Route("/openapi.json", keyed(openapi), methods=["GET"]),
        Route("/ui", page, methods=["GET"]),  # a static page: every call it makes needs the key
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

    def resolve() -> Path:
        return load_bundle_path(os.environ.get("SHOPRANK_MODEL"))

    app = create_app(lambda: Ranker(resolve(), params), settings=params.serve)
    state = app.state.service
    state.reloader = Reloader(state, resolve, lambda bundle: Ranker(bundle, params), params.serve.reload_s)
    return app
