"""Query understanding for the `intent` endpoint: the trained linear heads plus lexical matches.

The intent comes from :class:`~shoprank.models.understanding.QueryUnderstanding` (trained by
`shoprank understand` on the simulator's labels, shipped by `shoprank package`). Attributes
are read two ways: words of the query that name a known brand, colour, material or category
(exact, from the catalog), and the attribute heads applied to the query embedding (product
type), which share the text encoder's space with the item embeddings they were trained on.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

_PRICE_MAX = re.compile(r"\b(?:under|below|less than|max|up to|<)\s*\$?\s*(\d+(?:\.\d+)?)")
_PRICE_MIN = re.compile(r"\b(?:over|above|more than|from|at least|>)\s*\$?\s*(\d+(?:\.\d+)?)")


def vocabulary(items: pd.DataFrame) -> dict[str, dict[str, str]]:
    """attribute -> lower-cased value -> value as written, from the packaged item table."""
    vocab: dict[str, dict[str, str]] = {}
    for attr in ("brand", "colour", "material", "category_top"):
        if attr in items:
            values = items[attr].dropna().astype(str).unique()
            vocab[attr] = {v.lower(): v for v in values if v}
    if "category" in items:
        leaves = items["category"].dropna().astype(str).str.split(" > ").str[-1].unique()
        vocab["category"] = {v.lower(): v for v in leaves if v}
    return vocab


def lexical_attributes(query: str, vocab: dict[str, dict[str, str]]) -> dict[str, dict]:
    text = " " + re.sub(r"[^a-z0-9.$<> ]+", " ", query.lower()) + " "
    found: dict[str, dict] = {}
    for attr, values in vocab.items():
        for low in sorted(values, key=len, reverse=True):  # longest name first: "dark blue" before "blue"
            if f" {low} " in text:
                found[attr] = {"value": values[low], "confidence": 1.0, "source": "lexical"}
                break
    if m := _PRICE_MAX.search(query.lower()):
        found["price_max"] = {"value": float(m.group(1)), "confidence": 1.0, "source": "lexical"}
    if m := _PRICE_MIN.search(query.lower()):
        found["price_min"] = {"value": float(m.group(1)), "confidence": 1.0, "source": "lexical"}
    return found


def model_attributes(understanding, q_vec: np.ndarray, min_confidence: float = 0.5) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if understanding is None:
        return out
    x = q_vec.reshape(1, -1)
    for attr, clf in understanding.attributes.items():
        p = clf.predict_proba(x)[0]
        j = int(np.argmax(p))
        if p[j] >= min_confidence:
            out[attr] = {"value": clf.classes[j], "confidence": round(float(p[j]), 4), "source": "model"}
    return out


def intent_of(understanding, q_vec: np.ndarray) -> str | None:
    """The most likely intent of a query vector; None without an understanding model."""
    if understanding is None:
        return None
    probs, names = understanding.query_intent(q_vec.reshape(1, -1))
    return names[int(np.argmax(probs[0]))]


def describe(understanding, vocab: dict[str, dict[str, str]], query: str, q_vec: np.ndarray) -> dict:
    """The ``intent`` answer: intent probabilities (when there is a model) and attributes."""
    attributes = model_attributes(understanding, q_vec)
    attributes.update(lexical_attributes(query, vocab))
    if understanding is None:
        return {
            "query": query,
            "intent": None,
            "probabilities": {},
            "attributes": attributes,
            "degraded": True,
            "fallback": "no_understanding_model",
        }
    probs, names = understanding.query_intent(q_vec.reshape(1, -1))
    p = {n: round(float(v), 4) for n, v in zip(names, probs[0], strict=True)}
    return {
        "query": query,
        "intent": max(p, key=lambda name: p[name]),
        "probabilities": p,
        "attributes": attributes,
        "degraded": False,
        "fallback": None,
    }
