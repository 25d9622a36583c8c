"""Query features: a stable id per normalised query text and its embedding.

The id is how serving finds a query's cached embedding in the online store, so
:func:`query_id` is the one definition both sides call.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

import numpy as np
import pandas as pd
import pyarrow as pa

from shoprank.features.batch import Batch
from shoprank.features.items import Embed, vectors, versions

_SPACE = re.compile(r"\s+")
NO_QUERY = ""  # the id of the empty query of a recommendation feed: never in the store


def normalise_query(text: str) -> str:
    """Unicode NFKC, case-folded, whitespace collapsed and trimmed."""
    return _SPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()


def query_id(text: str) -> str:
    """Stable id of a query: ``q_`` + 16 hex digits of the SHA-1 of its normalised text.

    Texts that normalise to the same string share an id; the empty query (a feed) has
    the id ``""``, which no feature row carries.
    """
    norm = normalise_query(text)
    return "q_" + hashlib.sha1(norm.encode()).hexdigest()[:16] if norm else NO_QUERY


def query_ids(texts: pd.Series) -> pd.Series:
    """:func:`query_id` of a column, computed once per distinct text (6M rows, ~100k texts)."""
    codes, uniques = pd.factorize(texts.astype(str), sort=False)
    ids = np.array([query_id(t) for t in uniques], dtype=object)
    return pd.Series(ids[codes] if len(codes) else [], index=texts.index, dtype="string")


def query_text(batch: Batch, embed: Embed) -> pa.Table:
    """One row per query id, stamped when the query was first seen, with its embedding.

    The embedding is a function of the normalised text only, not of any event; the
    stamp says when the platform could first have known the query, so incremental
    materialisation picks up queries that are new since its last run.
    """
    imp = batch.impressions
    first_seen = imp.groupby("query", observed=True, sort=False)["ts"].min()
    df = pd.DataFrame(
        {
            "query_text": [normalise_query(t) for t in first_seen.index.astype(str)],
            "event_timestamp": first_seen.reset_index(drop=True),
        }
    )
    df = df[df["query_text"] != ""]
    df = df.groupby("query_text", sort=True, as_index=False)["event_timestamp"].min()
    df["query_id"] = [query_id(t) for t in df["query_text"]]
    # (n, dim) even for n = 0 (a log of recommendation feeds only): the encoder knows its width
    vecs = np.asarray(embed(df["query_text"].tolist()), dtype=np.float32)
    return pa.table(
        {
            "query_id": pa.array(df["query_id"], pa.string()),
            "event_timestamp": pa.array(df["event_timestamp"]),
            "query_text_version": versions(df["event_timestamp"]),
            "query_text": pa.array(df["query_text"], pa.string()),
            "query_embedding": vectors(vecs),
        }
    )
