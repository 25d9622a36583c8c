"""A request body read and decoded within bounds, before any model sees it.

``json.loads`` alone lets hostile bodies through to a 500: a nesting deep enough for a
``RecursionError``, an integer literal over Python's 4,300-digit limit (``ValueError``),
``NaN``/``Infinity`` (not JSON) and lone surrogates (``"\\ud800"``: valid JSON, not
encodable text, so hashing the query or writing the answer fails). :func:`decode` refuses
each with a :class:`BadBody` (HTTP 400) and a message that says which; :func:`read` stops
reading at the size limit (HTTP 413). What is left is plain JSON data of bounded shape,
checked field by field by :mod:`shoprank.ranking.requests`.
"""

from __future__ import annotations

import json
import math
from collections.abc import AsyncIterator
from typing import Any

# the deepest request is two levels (body -> filters or context -> value); room for clients
# that wrap, none for bodies built to exhaust the parser
MAX_DEPTH = 8
# digits of a number literal: a 64-bit integer has 20, a float's shortest repr 24
MAX_NUMBER_CHARS = 32


class BadBody(ValueError):
    """The body is not a bounded JSON object (HTTP ``status``)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


async def read(chunks: AsyncIterator[bytes], declared: str | None, limit: int) -> bytes:
    """The body from its ``chunks``, refused (413) as soon as it passes ``limit`` bytes.

    ``declared``: the Content-Length header, checked first so a large body is not read at all.
    """
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BadBody(f"request body is {int(declared)} bytes; at most {limit}", 413)
    raw = bytearray()
    async for chunk in chunks:
        raw += chunk
        if len(raw) > limit:
            raise BadBody(f"request body is over {limit} bytes; at most {limit}", 413)
    return bytes(raw)


def _int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_NUMBER_CHARS:
        raise BadBody(f"a number has {len(text)} digits; at most {MAX_NUMBER_CHARS}")
    return int(text)


def _float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise BadBody(f"a number is {len(text)} characters long; at most {MAX_NUMBER_CHARS}")
    value = float(text)
    if not math.isfinite(value):
        raise BadBody(f"a number is out of range: {text}")
    return value


def _constant(name: str) -> float:
    raise BadBody(f"{name} is not a JSON number")


def decode(raw: bytes) -> dict[str, Any]:
    """``raw`` as a JSON object of bounded depth, numbers and valid text; :class:`BadBody` if not."""
    try:
        data = json.loads(raw, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except BadBody:
        raise
    except RecursionError:
        raise BadBody(f"malformed JSON: nested deeper than {MAX_DEPTH} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, and any other bad literal
        raise BadBody(f"malformed JSON: {exc}"[:300]) from None
    if not isinstance(data, dict):
        raise BadBody(f"the body must be a JSON object, got {type(data).__name__}")
    _check(data, 1)
    return data


def _check(value: Any, depth: int) -> None:
    """Depth and text of every value (the parse is done, so this walks at most the body's size)."""
    if depth > MAX_DEPTH:
        raise BadBody(f"malformed JSON: nested deeper than {MAX_DEPTH} levels")
    if isinstance(value, str):
        _text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _text(key)
            _check(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _check(item, depth + 1)


def _text(value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadBody("a string is not valid Unicode text (a lone surrogate such as \\ud800)") from None
