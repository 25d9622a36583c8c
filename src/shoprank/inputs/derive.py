"""Derived model inputs: crosses of query, shopper history and candidate item, array-first.

Each :class:`Derivation` is written once and used by training, evaluation and serving:
``item_parts`` normalises the item's own columns (lower-cased attribute values, the top
category, the price as float) and ``cross`` combines them with the request's columns
(query, the shopper's history and price preference). Training and evaluation call
:func:`derive`, which does both on row-aligned columns; the serving fast path calls
``item_parts`` once per refresh of the item table and ``cross`` per request on the rows
it gathered, with the request's values repeated per row. :func:`shoprank.inputs.apply.derive`
applies every declared one to a frame.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from shoprank.inputs.frame import rowwise_cosine
from shoprank.inputs.understood import (
    UNDERSTOOD,
    query_bm25,
    query_category_prob,
    query_intent,
    query_top_prob,
    query_word_overlap,
)

Columns = Mapping[str, Any]  # name -> (n,) array, or Vectors for a text embedding


def _identity(cols: Columns) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class Derivation:
    reads: tuple[str, ...]  # the columns it reads: declared inputs or their sources
    cross: Callable[[Columns], np.ndarray]  # (n,) values from item parts and request columns
    item_parts: Callable[[Columns], dict[str, Any]] = _identity  # per-item parts, precomputable

    def __call__(self, cols: Columns) -> np.ndarray:
        return self.cross({**cols, **self.item_parts(cols)})


def strings(values: Any) -> np.ndarray:
    """Any column -> object array of str ('' for missing)."""
    arr = np.asarray(values, dtype=object)
    if all(type(v) is str for v in arr):  # the common case, without pandas' per-call cost
        return arr
    return pd.Series(arr).astype("string").fillna("").to_numpy(object)


def floats(values: Any) -> np.ndarray:
    """Any column -> float64 (NaN for missing or unparseable values)."""
    try:  # numbers and None: numpy alone, without pandas' per-call cost
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(np.asarray(values, dtype=object)), errors="coerce").to_numpy(
            np.float64
        )


def repeat(value: Any, n: int) -> np.ndarray:
    """One request's value as an (n,) object column (lists stay whole, one object per row)."""
    out = np.empty(n, dtype=object)
    out.fill(value)
    return out


# --- the shopper's history against the item's category -----------------------------------


def _top(category: str) -> str:
    return category.split(" > ")[0]


def _share(history: np.ndarray, values: np.ndarray, key: Callable[[str], str] | None) -> np.ndarray:
    """Share of each row's history entries equal to the row's value (0 for no history)."""
    out = np.zeros(len(values), dtype=np.float32)
    last: Any = None  # rows of one request share one history object: counted once
    for r, (h, v) in enumerate(zip(history, values, strict=True)):
        if h is None or isinstance(h, float) or not len(h):
            continue
        if h is not last:
            last, n = h, len(h)
            counts = Counter(str(x) if key is None else key(str(x)) for x in h)
        out[r] = counts.get(v, 0) / n
    return out


def _category_parts(cols: Columns) -> dict[str, Any]:
    return {"category:str": strings(cols["category"])}


def _top_parts(cols: Columns) -> dict[str, Any]:
    return {"category:top": np.array([_top(c) for c in strings(cols["category"])], dtype=object)}


def history_share(cols: Columns) -> np.ndarray:
    return _share(cols["recent_categories"], cols["category:str"], None)


def history_top_share(cols: Columns) -> np.ndarray:
    return _share(cols["recent_categories"], cols["category:top"], _top)


# --- price ------------------------------------------------------------------------------------


def _price_parts(cols: Columns) -> dict[str, Any]:
    return {"price:float": floats(cols["price"])}


def price_vs_pref(cols: Columns) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.log1p(cols["price:float"]) - np.log1p(floats(cols["user_price_pref"]))


# "boots under 50", "tent below $120": the price the shopper will not go over
PRICE_CAP = re.compile(r"\b(?:under|below|less than|cheaper than|up to|max)\s*[$£€]?\s*(\d+(?:\.\d+)?)\b")


@lru_cache(maxsize=65536)
def query_price_cap(query: str) -> float:
    """The price cap a (lower-cased) query names, NaN if none."""
    m = PRICE_CAP.search(query) if query else None
    return float(m.group(1)) if m else float("nan")


@lru_cache(maxsize=65536)
def _lower(query: str) -> str:
    return query.lower()


def over_price_cap(cols: Columns) -> np.ndarray:
    """1.0 where the item's price exceeds the cap its row's query names, else 0.0.

    Sentence embeddings do not compare numbers: without this a "tents under 50" query
    cannot tell a 45 tent from a 150 one.
    """
    caps = np.array([query_price_cap(_lower(q)) for q in strings(cols["query"])], dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (cols["price:float"] > caps).astype(np.float32)  # NaN cap or price compares False


# --- the query naming the item's attributes ------------------------------------------------

QUERY_MATCH_COLUMNS = ("brand", "colour", "material", "size")


@lru_cache(maxsize=262144)
def mentions(query: str, value: str) -> float:
    """1.0 where lower-cased ``query`` contains ``value`` as a whole word: "red" is not in "shredder"."""
    if not value or not query or value not in query:
        return 0.0
    at = query.find(value)
    while at >= 0:
        end = at + len(value)
        if (at == 0 or not query[at - 1].isalnum()) and (end == len(query) or not query[end].isalnum()):
            return 1.0
        at = query.find(value, at + 1)
    return 0.0


def _query_match(column: str) -> Derivation:
    part = f"{column}:lower"

    def parts(cols: Columns) -> dict[str, Any]:
        return {part: np.array([v.lower() for v in strings(cols[column])], dtype=object)}

    def cross(cols: Columns) -> np.ndarray:
        query = strings(cols["query"])
        return np.array([mentions(_lower(q), v) for q, v in zip(query, cols[part], strict=True)], np.float32)

    return Derivation(("query", column), cross, parts)


def _item_id_parts(cols: Columns) -> dict[str, Any]:
    return {"item_id:str": strings(cols["item_id"])}


def query_item_cosine(cols: Columns) -> np.ndarray:
    return rowwise_cosine(cols["query_embedding"], cols["item_embedding"])


DERIVATIONS: dict[str, Derivation] = {
    "history_share": Derivation(("category", "recent_categories"), history_share, _category_parts),
    "history_top_share": Derivation(("category", "recent_categories"), history_top_share, _top_parts),
    "price_vs_pref": Derivation(("price", "user_price_pref"), price_vs_pref, _price_parts),
    "over_price_cap": Derivation(("query", "price"), over_price_cap, _price_parts),
    **{f"query_{c}_match": _query_match(c) for c in QUERY_MATCH_COLUMNS},
    "query_item_cosine": Derivation(("query_embedding", "item_embedding"), query_item_cosine),
    # the query's understanding (shoprank.inputs.understood) against the item
    "query_category_prob": Derivation((UNDERSTOOD, "category"), query_category_prob, _category_parts),
    "query_top_prob": Derivation((UNDERSTOOD, "category"), query_top_prob, _top_parts),
    "query_bm25": Derivation((UNDERSTOOD, "item_id"), query_bm25, _item_id_parts),
    "query_word_overlap": Derivation((UNDERSTOOD, "item_id"), query_word_overlap, _item_id_parts),
    "query_intent": Derivation((UNDERSTOOD,), query_intent),
}
