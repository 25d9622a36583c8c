"""Derived model inputs: cross features of query, user history and candidate item."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

QUERY_MATCH_COLUMNS = ("brand", "colour", "material", "size")


def query_mentions(query: np.ndarray, values: pd.Series) -> np.ndarray:
    """1.0 where the lower-cased ``query`` contains the row's value as a whole word, else 0.0."""
    vals = values.astype("string").fillna("").str.lower().to_numpy(object)
    out = np.zeros(len(vals), dtype=np.float32)
    for r, (q, v) in enumerate(zip(query, vals, strict=True)):
        if v and q and v in q:
            at = q.find(v)
            while at >= 0:  # whole words only: "red" is not in "shredder"
                end = at + len(v)
                if (at == 0 or not q[at - 1].isalnum()) and (end == len(q) or not q[end].isalnum()):
                    out[r] = 1.0
                    break
                at = q.find(v, at + 1)
    return out


# "boots under 50", "tent below $120": the price the shopper will not go over
PRICE_CAP = re.compile(r"\b(?:under|below|less than|cheaper than|up to|max)\s*[$£€]?\s*(\d+(?:\.\d+)?)\b")


def query_price_cap(query: str) -> float:
    """The price cap a (lower-cased) query names, NaN if none."""
    m = PRICE_CAP.search(query) if query else None
    return float(m.group(1)) if m else float("nan")


def over_price_cap(query: np.ndarray, price: np.ndarray) -> np.ndarray:
    """1.0 where the item's price exceeds the cap its row's query names, else 0.0.

    Sentence embeddings do not compare numbers: without this a "tents under 50" query
    cannot tell a 45 tent from a 150 one. Each distinct query is parsed once.
    """
    codes, uniq = pd.factorize(pd.Series(query, dtype=object), sort=False)
    caps = np.array([query_price_cap(q) for q in uniq], dtype=np.float64)[codes]
    price = np.asarray(price, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        return (price > caps).astype(np.float32)  # NaN cap or price compares False


def derive(df: pd.DataFrame) -> pd.DataFrame:
    """Cross features of user history and candidate, added in place and returned.

    Written once here and used by training, evaluation and serving alike.
    """

    def share(hist: pd.Series, value: pd.Series) -> np.ndarray:
        out = np.zeros(len(df), dtype=np.float32)
        for r, (h, v) in enumerate(zip(hist.to_numpy(), value.to_numpy(), strict=True)):
            if h is not None and len(h):
                out[r] = float(np.mean([x == v for x in h]))
        return out

    if "recent_categories" in df:
        top = df["category"].astype("string").str.split(" > ").str[0]
        df["hist_category_share"] = share(df["recent_categories"], df["category"])
        df["hist_top_share"] = share(
            df["recent_categories"].map(lambda h: None if h is None else [c.split(" > ")[0] for c in h]), top
        )
    if "query" in df:  # does the query ask for what the item is? (brand, colour, material, size)
        query = df["query"].astype("string").fillna("").str.lower().to_numpy(object)
        for col in QUERY_MATCH_COLUMNS:
            if col in df:
                df[f"query_{col}_match"] = query_mentions(query, df[col])
        if "price" in df:
            df["query_over_price_cap"] = over_price_cap(query, df["price"].astype("float64").to_numpy())
    if "user_price_pref" in df:
        df["price_vs_pref"] = np.log1p(df["price"].astype(float)) - np.log1p(
            df["user_price_pref"].astype(float)
        )
    return df
