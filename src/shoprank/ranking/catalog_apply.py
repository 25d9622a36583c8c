"""Catalogue update rows turned into the next catalog, retrieval indexes and feed index.

:func:`build` reads what a worker serves and returns successors built beside it; nothing
serving is modified (:mod:`~shoprank.ranking.catalog_refresh` swaps them in at once).
Rows are only ever appended: row ``i`` names the same item before and after, so a row
number a request holds stays valid whatever it meets. A delisted item keeps its row and
leaves the indexes' ``listed`` rows, so it is never retrieved again.

A new item gets the values the features step gives an item at its listing, when it has no
impression yet (features/items.py: ``item_profile`` from its catalogue row, ``item_stats``
with no history): no impressions, the catalogue's click-rate prior as its smoothed CTR, a
COEC of 1, its age, and the new flag when it is younger than ``features.new_item_days``.
Its text vector comes from the bundle's encoder over the text the features step embeds
(``item_text_inputs``: title, then description), the model's item-id input reads it as
unknown, and the feed's co-click and collaborative tables have no row for it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from shoprank.features.items import item_text_inputs, profile_of
from shoprank.ranking import understand
from shoprank.ranking.catalog import Catalog
from shoprank.retrieval.clicks import NeighbourTable
from shoprank.retrieval.history import FeedIndex
from shoprank.retrieval.hybrid import HybridRetriever, item_document

TEXT = ("title", "description")  # what an item's vector is made of
FACTS = ("title", "description", "created_at")  # catalogue columns shown beside the features


@dataclass(frozen=True)
class ColdItems:
    """The item features of an item with no history, as the features step computes them."""

    prior: float  # the catalogue's click-rate prior: the smoothed CTR of an item never shown
    new_item_days: float

    @classmethod
    def of(cls, items: pd.DataFrame, new_item_days: float) -> ColdItems:
        """The prior read off the packaged items: the CTR of any item with no impression in a window."""
        for col in items.columns:
            if col.startswith("item_impressions_") and (ctr := col.replace("impressions", "ctr")) in items:
                unseen = items.loc[items[col] == 0, ctr].dropna()
                if len(unseen):
                    return cls(float(unseen.median()), new_item_days)
        return cls(float("nan"), new_item_days)  # a missing value: the model reads the training mean

    def stats(self, created: pd.Series, columns: list[str], now: datetime) -> dict[str, Any]:
        age = np.maximum((pd.Timestamp(now) - created).dt.total_seconds().to_numpy() / 86400.0, 0.0)
        out: dict[str, Any] = {"item_age_days": age, "item_is_new": (age < self.new_item_days).astype(int)}
        for col in columns:
            if col.startswith("item_impressions_"):
                out[col] = 0
            elif col.startswith("item_ctr_"):
                out[col] = self.prior
            elif col.startswith("item_coec_"):
                out[col] = 1.0  # (0 + prior pseudo-clicks) / (0 + the same expected)
        return out


@dataclass
class Built:
    catalog: Catalog
    retriever: HybridRetriever
    feed: FeedIndex
    vocab: dict[str, dict[str, str]]
    appended: pd.DataFrame  # the new items' rows of the item table, in row order
    changed: pd.DataFrame  # known items' new item feature values from the catalogue (index: their rows)
    counts: dict[str, int]


def build(
    catalog: Catalog,
    retriever: HybridRetriever,
    feed: FeedIndex,
    rows: pd.DataFrame,
    encoder: Any,
    cold: ColdItems,
    now: datetime,
) -> Built:
    """The successors of ``catalog``, ``retriever`` and ``feed`` after the update ``rows`` (checked
    rows of :mod:`shoprank.data.updates`, in the order they landed: an id's last row wins)."""
    rows = rows.drop_duplicates("item_id", keep="last")
    off = rows["delisted"].to_numpy() == 1
    listing = rows[~off].reset_index(drop=True)
    known = listing["item_id"].isin(catalog.row_of.keys()).to_numpy()
    items, n = catalog.items, len(catalog)
    old_rows = catalog.rows_of(listing.loc[known, "item_id"].tolist())
    at = np.empty(len(listing), np.int64)  # each listing row's row in the next table
    at[known], at[~known] = old_rows, n + np.arange(int((~known).sum()))
    facts = _facts(listing, items)
    table = _table(items, facts, known, old_rows, cold, now)

    texts = np.asarray(item_text_inputs(listing), dtype=object)
    embed = ~known
    embed[known] = texts[known] != np.asarray(item_text_inputs(items.iloc[old_rows]), dtype=object)
    vectors = catalog.vectors
    if embed.any():  # a copy: the serving vectors stay as they are
        vectors = np.concatenate([vectors, np.zeros((len(table) - n, catalog.dim), np.float32)])
        vectors[at[embed]] = encoder.encode(texts[embed].tolist())

    listed = np.concatenate([_listed(retriever, n), np.ones(len(table) - n, bool)])
    listed[at] = True  # a listing row lists an item again after a delisting
    gone = catalog.rows_of([i for i in rows.loc[off, "item_id"] if i in catalog.row_of])
    listed[gone] = False
    new_retriever = _indexes(retriever, items, table, old_rows, vectors, listed)
    new_catalog = Catalog.build(
        table, pd.DataFrame(columns=["user_id", *catalog.user_columns]), vectors, catalog.filled
    )
    profile = [c for c in facts.columns if c in catalog.item_columns]
    return Built(
        new_catalog,
        new_retriever,
        _feed(feed, new_retriever, new_catalog, len(table) - n),
        understand.vocabulary(table[listed]),
        table.iloc[n:],
        table.iloc[old_rows][profile].set_axis(old_rows),
        {
            "listed": len(table) - n,
            "changed": int(known.sum()),
            "delisted": len(gone),
            "unknown_delisted": int(off.sum()) - len(gone),
            "items": int(listed.sum()),
        },
    )


def _indexes(
    retriever: HybridRetriever,
    items: pd.DataFrame,
    table: pd.DataFrame,
    old_rows: np.ndarray,
    vectors: np.ndarray,
    listed: np.ndarray,
) -> HybridRetriever:
    """The retriever over ``table``: indexes rebuilt when a document was added or changed (bm25s
    adds no documents to an index), else the serving ones with the new ``listed`` rows."""
    if len(table) > len(items) or item_document(items.iloc[old_rows]) != item_document(table.iloc[old_rows]):
        index = HybridRetriever.build(item_document(table), vectors)
        return HybridRetriever(index.bm25, index.index, index.vectors, listed)
    return HybridRetriever(retriever.bm25, retriever.index, vectors, listed)


def _facts(listing: pd.DataFrame, items: pd.DataFrame) -> pd.DataFrame:
    """Catalogue rows as the item table's columns: display facts and the profile features."""
    profile = profile_of(listing).drop(columns=["event_timestamp"])
    facts = pd.concat([profile, listing[[c for c in FACTS if c in items]]], axis=1)
    return facts[[c for c in items.columns if c in facts]]


def _table(
    items: pd.DataFrame,
    facts: pd.DataFrame,
    known: np.ndarray,
    old_rows: np.ndarray,
    cold: ColdItems,
    now: datetime,
) -> pd.DataFrame:
    """The next item table: known items' catalogue values replaced, new items appended with cold stats."""
    table = items.copy()
    if (~known).any():
        fresh = facts[~known].reset_index(drop=True).reindex(columns=items.columns)
        for col, value in cold.stats(fresh["created_at"], list(items.columns), now).items():
            if col in items:
                fresh[col] = value
        table = pd.concat([table, _like(fresh, items)], ignore_index=True)
    changed = _like(facts[known], items)
    for col in changed.columns:
        table.iloc[old_rows, table.columns.get_loc(col)] = changed[col].to_numpy()
    return table


def _like(df: pd.DataFrame, template: pd.DataFrame) -> pd.DataFrame:
    """``df`` in ``template``'s dtypes where the values fit."""
    out = df.copy()
    for col in out.columns:
        with contextlib.suppress(TypeError, ValueError):  # a null in an integer column: kept as it is
            out[col] = out[col].astype(template[col].dtype)
    return out


def _listed(retriever: HybridRetriever, n: int) -> np.ndarray:
    return np.ones(n, bool) if retriever.listed is None else retriever.listed.copy()


def _feed(feed: FeedIndex, items: HybridRetriever, catalog: Catalog, added: int) -> FeedIndex:
    """The feed's index over the next rows: no clicks or factors for new items; listing times."""
    co = feed.co_clicks
    co_clicks = NeighbourTable(
        np.concatenate([co.indptr, np.full(added, co.indptr[-1])]), co.indices, co.weights
    )
    factors = feed.factors
    if factors is not None and added:
        dim = factors.item_factors.shape[1]
        factors = replace(
            factors,
            item_factors=np.vstack(
                [factors.item_factors, np.zeros((added, dim), factors.item_factors.dtype)]
            ),
            item_bias=np.concatenate([factors.item_bias, np.zeros(added, factors.item_bias.dtype)]),
            has_item=np.concatenate([factors.has_item, np.zeros(added, bool)]),
        )
    listed = pd.to_datetime(catalog.items["created_at"], utc=True).to_numpy("datetime64[ns]").astype(np.int64)
    popularity = np.concatenate([feed.popularity, np.zeros(added)])
    return FeedIndex(items, co_clicks, popularity, catalog.is_new, listed, feed.fallback, factors)
