"""The API key: one check for the app's routes and for the server's own routes around it.

``$SHOPRANK_API_KEY``, sent as ``X-API-Key: <key>`` or ``Authorization: Bearer <key>``.
:func:`key_error` is the check; :class:`RequireKey` applies it to every HTTP request of
an ASGI app but the open paths, so BentoML's own routes (its ``/metrics``: the same
counters, model version and worker ids as the app's) need the key like the app's do.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

# what probes and browsers open without headers: liveness, readiness, the static page
OPEN_PATHS = ("/health", "/ready", "/ui", "/", "/healthz", "/livez", "/readyz")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def key_error(headers: Mapping[str, str], api_key: str | None) -> str | None:
    """Why a request with ``headers`` (lower-case names) may not pass; None when it may."""
    if not api_key:
        return None
    given = headers.get("x-api-key") or ""
    auth = headers.get("authorization") or ""
    if not given and auth.lower().startswith("bearer "):
        given = auth[7:].strip()
    if not given:
        return "missing API key: send it in the X-API-Key header"
    if not hmac.compare_digest(given.encode(), api_key.encode()):
        return "wrong API key"
    return None


class RequireKey:
    """ASGI middleware: a 401 for any HTTP request without the key, but on ``open_paths``."""

    def __init__(self, app: Any, api_key: str | None, open_paths: Iterable[str] = OPEN_PATHS):
        self.app, self.api_key, self.open = app, api_key or None, frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.api_key or scope.get("path") in self.open:
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        error = key_error(headers, self.api_key)
        if error is None:
            await self.app(scope, receive, send)
            return
        body = json.dumps({"error": error, "status": 401}).encode()
        start = {
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json")],
        }
        await send(start)
        await send({"type": "http.response.body", "body": body})
