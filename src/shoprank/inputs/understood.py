"""The query as the understanding heads read it: one object per query, a column per row.

The trained heads (the query-category head learned from clicks, the intent head of
`shoprank understand`) and the item lexicon (:mod:`shoprank.inputs.lexical`) are read once
per distinct query by :class:`QueryReader`: :meth:`QueryReader.understood` for one request
(serving) and :meth:`QueryReader.column` for a frame of many (training, evaluation, drift),
which calls the same code on each distinct query. The result, an :class:`Understood`, is
the request column ``query_understood`` that the derivations below cross with the item's
own columns, as every other derived input is crossed (:mod:`shoprank.inputs.derive`); the
serving fast path puts the request's one object on every row it gathers.

Neutral values: an empty query (a recommendation feed), a missing head or an item the
lexicon lacks give NaN (a missing number: the networks fill it as they fill any missing
input, LightGBM routes it by its own rule) and no intent (``<na>``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shoprank.inputs.lexical import Lexicon

UNDERSTOOD = "query_understood"  # the request column: the row's query as the heads read it
NAN = float("nan")


@dataclass(frozen=True, eq=False)
class Understood:
    """One query, understood: its category probabilities, intent and words."""

    category: dict[str, float] | None = None  # full category -> probability (None: no head or query)
    top: dict[str, float] | None = None  # top category -> probability
    intent: str | None = None  # the most likely intent (None: no head or query)
    terms: tuple[tuple[str, float], ...] = ()  # distinct query words and their IDF
    lexicon: Lexicon | None = None  # the items' words (None: no lexicon or query)


NOTHING = Understood()  # an empty query, or no reader at all


@dataclass
class QueryReader:
    """The heads and the lexicon every derivation of the query's understanding reads.

    ``category``: a :class:`~shoprank.models.query_category.QueryCategoryHead`; ``intent``: a
    :class:`~shoprank.models.understanding.TextClassifier` of intents; either may be None.
    """

    category: Any = None
    intent: Any = None
    lexicon: Lexicon | None = None

    def many(self, queries: list[str], vectors: np.ndarray | None) -> list[Understood]:
        """One :class:`Understood` per query (its embedding a row of ``vectors``), heads batched.

        Without ``vectors`` (a frame without query embeddings) only the words are read."""
        out = [NOTHING] * len(queries)
        asked = [i for i, q in enumerate(queries) if q]
        if not asked:
            return out
        x = None if vectors is None else np.asarray(vectors, dtype=np.float64)[asked]
        full = tops = intents = None
        if self.category is not None and x is not None:
            full = self.category.predict_proba(x)
            tops = self.category.top_proba(full)
        if self.intent is not None and x is not None:
            intents = np.asarray(self.intent.classes, dtype=object)[
                self.intent.predict_proba(x).argmax(axis=1)
            ]
        for j, i in enumerate(asked):
            out[i] = Understood(
                category=None
                if full is None
                else dict(zip(self.category.classes, full[j].tolist(), strict=True)),
                top=None if tops is None else dict(zip(self.category.tops, tops[j].tolist(), strict=True)),
                intent=None if intents is None else str(intents[j]),
                terms=self.lexicon.query_terms(queries[i]) if self.lexicon is not None else (),
                lexicon=self.lexicon,
            )
        return out

    def understood(self, query: str, vector: np.ndarray) -> Understood:
        """The request's query (serving): what :meth:`column` gives each of its rows."""
        return self.many([query or ""], np.asarray(vector).reshape(1, -1))[0]

    def column(self, queries: Any, vectors: Any) -> np.ndarray:
        """Per row, the :class:`Understood` of its query; each distinct query read once."""
        text = pd.Series(np.asarray(queries, dtype=object)).astype("string").fillna("").to_numpy(object)
        out = np.empty(len(text), dtype=object)
        if not len(text):
            return out
        uniq, first, inverse = np.unique(text.astype(str), return_index=True, return_inverse=True)
        got = self.many([str(q) for q in uniq], None if vectors is None else np.asarray(vectors[first]))
        for r, j in enumerate(inverse.reshape(-1)):
            out[r] = got[j]
        return out


# --- the derivations: crosses of the query's understanding with the item --------------------


def _each(cols: Any, key: str, value: Any) -> np.ndarray:
    """``value(understood, item value)`` per row, NaN where the row has no understanding."""
    col, items = cols[UNDERSTOOD], cols[key]
    out = np.full(len(items), NAN, dtype=np.float64)
    for r, (u, v) in enumerate(zip(col, items, strict=True)):
        if isinstance(u, Understood):
            out[r] = value(u, v)
    return out


def _prob(probs: dict[str, float] | None, value: str) -> float:
    return NAN if probs is None else probs.get(value, 0.0)


def query_category_prob(cols: Any) -> np.ndarray:
    """P(the query asks for the item's full category), from the query-category head."""
    return _each(cols, "category:str", lambda u, v: _prob(u.category, v))


def query_top_prob(cols: Any) -> np.ndarray:
    """P(the query asks for the item's top category): the head's probabilities summed per top."""
    return _each(cols, "category:top", lambda u, v: _prob(u.top, v))


def query_bm25(cols: Any) -> np.ndarray:
    """BM25 of the query in the item's words (NaN: no query words or no lexicon)."""
    return _each(
        cols, "item_id:str", lambda u, v: u.lexicon.bm25(u.terms, v) if u.lexicon and u.terms else NAN
    )


def query_word_overlap(cols: Any) -> np.ndarray:
    """Share of the query's words found in the item's words."""
    return _each(cols, "item_id:str", lambda u, v: u.lexicon.overlap(u.terms, v) if u.lexicon else NAN)


def query_intent(cols: Any) -> np.ndarray:
    """The query's most likely intent, the same on every row of a request (None: unknown)."""
    col = cols[UNDERSTOOD]
    return np.array([u.intent if isinstance(u, Understood) else None for u in col], dtype=object)
