"""The requests the service accepts, with every rule a request must meet.

A body is checked here, before any work is done for it: its shape and types (strict:
``"10"`` is not a number), its size limits (the serving settings' ``max_query_chars``,
``max_k`` and ``max_candidates``) and its item ids (known to the catalog). A bad request
is a :class:`BadRequest` whose message names the field; an unknown item is a 404, any
other rule a 422. The ranker assumes what these models guarantee and checks nothing again.

The limits and the catalog reach the validators as pydantic's validation context, a
:class:`RequestRules`; :func:`parse` passes it.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Container
from dataclasses import dataclass
from typing import Annotated, Any, Literal, Protocol, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from shoprank.inputs.declare import shop_columns

ID = re.compile(r"[A-Za-z0-9_.:\-]{1,128}")  # whole ids only (fullmatch): no trailing newline
ID_RULE = "1-128 characters of letters, digits and _ . : -"
INVALID, UNKNOWN_ITEM = "invalid", "unknown_item"  # error types; UNKNOWN_ITEM alone makes a 404


class BadRequest(ValueError):
    """The request cannot be served as asked (HTTP 4xx); the message says why."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


class Limits(Protocol):
    """The serving settings the rules read."""

    @property
    def max_query_chars(self) -> int: ...
    @property
    def max_k(self) -> int: ...
    @property
    def max_candidates(self) -> int: ...


@dataclass(frozen=True)
class RequestRules:
    """What a request is checked against: the serving settings' limits and the known item ids."""

    settings: Limits
    items: Container[str]
    listed: Container[str] | None = None  # the items `rank` may take (None: all); delisted ones are not


def _rules(info: ValidationInfo) -> RequestRules:
    if not isinstance(info.context, RequestRules):
        raise TypeError("requests are validated with parse(): the limits and the catalog are its context")
    return info.context


def _invalid(message: str, kind: str = INVALID) -> PydanticCustomError:
    return PydanticCustomError(kind, message)


def _check_query(value: str, info: ValidationInfo, allow_empty: bool) -> str:
    limit = _rules(info).settings.max_query_chars
    if len(value) > limit:
        raise _invalid(f"query is {len(value)} characters long; at most {limit} are allowed")
    value = value.strip()
    if not allow_empty and not value:
        raise _invalid("query must not be empty")
    return value


def _check_k(k: int, info: ValidationInfo, name: str = "k") -> int:
    most = _rules(info).settings.max_k
    if not 1 <= k <= most:
        raise _invalid(f"{name} must be between 1 and {most}, got {k}")
    return k


def _id(name: str):
    def check(value: str) -> str:
        if not ID.fullmatch(value):
            raise _invalid(f"{name} must be {ID_RULE}")
        return value

    return AfterValidator(check)


ID_SCHEMA = {"pattern": f"^{ID.pattern}$"}  # the same rule in the published schema
MAX_TEXT = 256  # characters of a free-text value other than the query (a category, a context value)
MAX_CONTEXT = 64  # context keys: more than any shop declares; the rest are refused by name anyway
MAX_ERRORS = 10  # validation errors listed in one message

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
UserId = Annotated[str, _id("user_id"), Field(json_schema_extra=ID_SCHEMA)]
RequestId = Annotated[str, _id("request_id"), Field(json_schema_extra=ID_SCHEMA)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Price = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Token = Annotated[str, StringConstraints(min_length=3, max_length=64)]

# the shop's impression columns (data.columns.impressions)
Context = Annotated[dict[str, Text | float | None], Field(max_length=MAX_CONTEXT)]


class Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


def check_context(context: dict) -> dict:
    """Only declared impression columns, numbers for numeric ones and text for categorical ones."""
    declared = shop_columns("impressions")
    if unknown := sorted(set(context) - set(declared)):
        raise _invalid(f"unknown context key(s) {unknown[:10]}; the model reads {sorted(declared) or 'none'}")
    for key, value in context.items():
        if value is None:
            continue
        numeric = declared[key] == "numeric"
        if numeric and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise _invalid(f"context {key!r} is numeric: send a number, not {type(value).__name__}")
        if not numeric and not isinstance(value, str):
            raise _invalid(f"context {key!r} is categorical: send text, not {type(value).__name__}")
    return context


class ContextBody(Body):
    """A body that scores: it may carry the request's values of the shop's impression columns."""

    context: Context = {}

    @field_validator("context")
    @classmethod
    def _context(cls, value: dict) -> dict:
        return check_context(value)


class Filters(Body):
    category: Text | None = None
    price_min: Price | None = None
    price_max: Price | None = None

    @model_validator(mode="after")
    def check_price_range(self) -> Filters:
        lo, hi = self.price_min, self.price_max
        if lo is not None and hi is not None and lo > hi:
            raise _invalid(f"price_min {lo} is above price_max {hi}")
        return self


class SearchBody(ContextBody):
    query: str
    user_id: UserId | None = None
    k: int = Field(10, validate_default=True)  # the default is checked against max_k too
    filters: Filters | None = None
    explain: bool = True

    @field_validator("query")
    @classmethod
    def check_query(cls, value: str, info: ValidationInfo) -> str:
        return _check_query(value, info, allow_empty=False)

    @field_validator("k")
    @classmethod
    def check_k(cls, k: int, info: ValidationInfo) -> int:
        return _check_k(k, info)


class RecommendBody(ContextBody):
    """A feed: no query. An unknown ``user_id`` is a shopper without history (a cold start)."""

    user_id: UserId
    k: int = Field(20, validate_default=True)  # a feed page; checked against max_k like search's
    exclude_seen: bool = True  # leave out the items of the shopper's recent clicks
    filters: Filters | None = None
    explain: bool = True

    @field_validator("k")
    @classmethod
    def check_k(cls, k: int, info: ValidationInfo) -> int:
        return _check_k(k, info)


class RankBody(ContextBody):
    query: str = Field("", validate_default=True)  # empty: a feed, no query
    user_id: UserId | None = None
    item_ids: list[Id]
    explain: bool = False
    # the page the caller shows: the first ``shown`` of the order are logged as served (and
    # get feedback tokens); the rest were scored, never seen, and are not impressions
    shown: int = Field(10, validate_default=True)

    @field_validator("shown")
    @classmethod
    def check_shown(cls, shown: int, info: ValidationInfo) -> int:
        return _check_k(shown, info, "shown")

    @field_validator("query")
    @classmethod
    def check_query(cls, value: str, info: ValidationInfo) -> str:
        return _check_query(value, info, allow_empty=True)

    @field_validator("item_ids")
    @classmethod
    def check_item_ids(cls, item_ids: list[str], info: ValidationInfo) -> list[str]:
        rules = _rules(info)
        if not item_ids:
            raise _invalid("item_ids must list at least one candidate")
        most = rules.settings.max_candidates
        if len(item_ids) > most:
            raise _invalid(f"{len(item_ids)} candidates; at most {most} per request")
        if len(set(item_ids)) != len(item_ids):
            dup = sorted(i for i, n in Counter(item_ids).items() if n > 1)[:5]
            raise _invalid(f"item_ids has duplicates: {dup}")
        known = rules.items if rules.listed is None else rules.listed
        unknown = [i for i in item_ids if i not in known]
        if unknown:
            more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
            raise _invalid(f"unknown item_ids: {unknown[:10]}{more}", UNKNOWN_ITEM)
        return item_ids


class IntentBody(Body):
    query: str

    @field_validator("query")
    @classmethod
    def check_query(cls, value: str, info: ValidationInfo) -> str:
        return _check_query(value, info, allow_empty=False)


class FeedbackBody(Body):
    """A click or purchase on a served result: ``feedback_token`` is the one the result carried."""

    request_id: RequestId
    item_id: Id
    event: Literal["click", "purchase"]
    feedback_token: Token
    position: int | None = Field(None, ge=1)  # where it was shown; the token's when left out

    @field_validator("position")
    @classmethod
    def check_position(cls, position: int | None, info: ValidationInfo) -> int | None:
        most = largest_position(_rules(info).settings)
        if position is not None and position > most:
            raise _invalid(f"position must be between 1 and {most}, got {position}")
        return position

    @field_validator("item_id")
    @classmethod
    def check_item_id(cls, item_id: str, info: ValidationInfo) -> str:
        if item_id not in _rules(info).items:
            raise _invalid(f"unknown item_id {item_id!r}", UNKNOWN_ITEM)
        return item_id


class CatalogRefreshBody(Body):
    """No fields: the call applies what landed in ``paths.catalog_updates`` (send ``{}``)."""


def largest_position(settings: Limits) -> int:
    """The last position a response can have: a search page or a ranked candidate list."""
    return max(settings.max_k, settings.max_candidates)


B = TypeVar("B", bound=Body)


def parse(model: type[B], data: Any, rules: RequestRules) -> B:
    """``data`` (a decoded JSON body) as ``model``; :class:`BadRequest` naming each broken rule."""
    try:
        return model.model_validate(data, context=rules)
    except ValidationError as exc:
        errors = exc.errors()
        status = 404 if all(e["type"] == UNKNOWN_ITEM for e in errors) else 422
        raise BadRequest(message(exc), status) from None


def message(exc: ValidationError) -> str:
    """One line per error: ``field: what is wrong``."""
    errors = exc.errors()
    parts = []
    for err in errors[:MAX_ERRORS]:
        where = ".".join(str(p) for p in err["loc"])[:100] or "body"
        parts.append(f"{where}: {err['msg']}")
    if len(errors) > MAX_ERRORS:
        parts.append(f"and {len(errors) - MAX_ERRORS} more")
    return "; ".join(parts)
