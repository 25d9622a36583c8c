"""The service's OpenAPI document, served at /openapi.json.

The request bodies' schemas are pydantic's, generated from the models of
:mod:`shoprank.ranking.requests` that check the requests; the limits that come from the
serving settings (``max_query_chars``, ``max_k``, ``max_candidates``) are added to them
here, from the same settings the validators read. Responses are described by their
status codes and the error body every 4xx and 5xx has.
"""

from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from shoprank.ranking.requests import Body, Limits, largest_position

ERROR = {
    "type": "object",
    "required": ["error", "status"],
    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
}
# each result's item attributes in /search, /recommend and /rank: the catalogue's value, or one
# `shoprank understand` filled from the item's text where the field was empty (inferred)
ATTRIBUTES = {
    "type": "object",
    "additionalProperties": {
        "type": "object",
        "required": ["value", "inferred"],
        "properties": {"value": {"type": "string"}, "inferred": {"type": "boolean"}},
    },
}
RESULTS = {  # the part of a ranked answer the schema describes
    "type": "object",
    "properties": {
        "results": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"attributes": {"$ref": "#/components/schemas/Attributes"}},
            },
        }
    },
}
RANKED = ("/search", "/recommend", "/rank")
JSON_ERROR = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
KEYED: list[dict[str, list[str]]] = [{"ApiKey": []}, {"Bearer": []}]
OPEN = ("/health", "/ready")  # what a probe calls: no API key
STATIC = ("/ui",)  # a page without data, opened by a browser that cannot send the key; its calls need it


def _limits(settings: Limits) -> dict[str, dict[str, int]]:
    """JSON Schema keywords of each body field whose limit is a serving setting."""
    return {
        "query": {"maxLength": settings.max_query_chars},
        "k": {"minimum": 1, "maximum": settings.max_k},
        "item_ids": {"minItems": 1, "maxItems": settings.max_candidates},
        "position": {"maximum": largest_position(settings)},
    }


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    return {"description": description, "content": content}


def _errors(*codes: int) -> dict[str, Any]:
    reasons = {
        400: "malformed JSON, or not a bounded JSON object",
        401: "missing or wrong API key",
        404: "unknown item ids",
        413: "body over serve.max_body_bytes",
        422: "a field breaks a rule (named in the message)",
        503: "the model is not loaded yet",
    }
    return {str(c): {"description": reasons[c], **JSON_ERROR} for c in codes}


def document(bodies: dict[str, tuple[type[Body], str]], settings: Limits, version: str) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service; ``bodies``: path -> (request model, summary)."""
    _, top = models_json_schema(
        [(model, "validation") for model, _ in bodies.values()], ref_template="#/components/schemas/{model}"
    )
    schemas: dict[str, Any] = top.get("$defs", {})
    limits = _limits(settings)
    for schema in schemas.values():
        for name, field in schema.get("properties", {}).items():
            if name in limits:
                target = next((s for s in field.get("anyOf", []) if s.get("type") != "null"), field)
                target.update(limits[name])
    schemas["Error"] = ERROR
    schemas["Attributes"] = ATTRIBUTES
    paths: dict[str, Any] = {}
    for path, (model, summary) in bodies.items():
        body = {"$ref": f"#/components/schemas/{model.__name__}"}
        paths[path] = {
            "post": {
                "summary": summary,
                "operationId": path.strip("/").replace("/", "_"),
                "security": KEYED,
                "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
                "responses": {
                    "200": _json("the answer", RESULTS if path in RANKED else None),
                    **_errors(400, 401, 404, 413, 422, 503),
                },
            }
        }
    text = {"content": {"text/plain": {"schema": {"type": "string"}}}}
    gets = {
        "/health": ("liveness: the process answers", {"200": _json("alive")}),
        "/ready": (
            "readiness: the model is loaded; whether the online store answers",
            {"200": _json("ready"), **_errors(503)},
        ),
        "/metrics": ("Prometheus metrics", {"200": {"description": "metrics", **text}, **_errors(401)}),
        "/openapi.json": ("this document", {"200": _json("OpenAPI 3.1"), **_errors(401)}),
        "/ui": ("the search page", {"200": {"description": "HTML", "content": {"text/html": {}}}}),
    }
    for path, (summary, responses) in gets.items():
        name = path.strip("/").replace(".", "_")
        op: dict[str, Any] = {"summary": summary, "operationId": name, "responses": responses}
        if path not in OPEN and path not in STATIC:
            op["security"] = KEYED
        paths[path] = {"get": op}
    return {
        "openapi": "3.1.0",
        "info": {"title": "shoprank", "version": version},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {
                "ApiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
                "Bearer": {"type": "http", "scheme": "bearer"},
            },
        },
    }
