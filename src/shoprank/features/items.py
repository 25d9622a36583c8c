"""Item feature tables: profile (static), stats (daily snapshots) and text embedding.

Every table has ``item_id`` and ``event_timestamp``; docs/features.md lists the columns.
"""

from __future__ import annotations

import json
from collections.abc import Callable

import numpy as np
import pandas as pd
import pyarrow as pa

from shoprank.config import Features
from shoprank.features.batch import Batch
from shoprank.features.history import (
    DAY,
    cumulative,
    prior_ctr,
    smoothed_ctr,
    snapshot_rows,
    windowed,
    windows,
)
from shoprank.inputs.declare import SHOP
from shoprank.inputs.texts import item_text_inputs

Embed = Callable[[list[str]], np.ndarray]  # texts -> (n, dim) float32, input order
ATTRIBUTE_FIELDS = ("colour", "material", "size")  # parsed from the attributes JSON


def _attributes(raw: pd.Series) -> pd.DataFrame:
    """The catalog's attributes JSON -> a few typed columns (null where unknown)."""
    parsed = [json.loads(s) if isinstance(s, str) and s else {} for s in raw]
    out = pd.DataFrame(
        {
            f: pd.array([a.get(f) if isinstance(a.get(f), str) else None for a in parsed], dtype="string")
            for f in ATTRIBUTE_FIELDS
        }
    )
    out["n_attributes"] = np.array([len(a) for a in parsed], dtype=np.int64)
    out["n_features"] = np.array([len(a.get("features") or []) for a in parsed], dtype=np.int64)
    return out


def item_profile(batch: Batch) -> pd.DataFrame:
    """One row per item stamped at its creation: what the catalog says about it.

    The catalog is a snapshot, so a price that changed later is read as if it had
    always been the current one; the contract has no price history to do better.
    """
    return profile_of(batch.catalog)


def profile_of(c: pd.DataFrame) -> pd.DataFrame:
    """:func:`item_profile` of catalog rows (the service's catalogue updates use it too)."""
    out = pd.DataFrame(
        {
            "item_id": c["item_id"].astype("string"),
            "event_timestamp": c["created_at"],
            "price": c["price"].astype(np.float32),
            "log_price": np.log1p(c["price"].to_numpy(np.float64)).astype(np.float32),
            "category": c["category"].astype("string"),
            "category_top": c["category"].astype("string").str.split(" > ").str[0],
            "brand": c["brand"].astype("string"),
        }
    )
    return pd.concat([out, _attributes(c["attributes"]), declared_columns(c, "item_profile")], axis=1)


def declared_columns(table: pd.DataFrame, view: str) -> pd.DataFrame:
    """The columns the shop declares for ``view`` (data.columns), typed: numeric float32, else string.

    A declared column the table lacks (a simulated batch, a feedback-only row) is all null.
    """
    out = {}
    for x in SHOP:
        if x.view != view:
            continue
        col = table[x.name] if x.name in table else pd.Series([None] * len(table), index=table.index)
        if x.kind == "numeric":
            out[x.name] = pd.to_numeric(col, errors="coerce").astype(np.float32)
        else:
            out[x.name] = col.astype("string")
    return pd.DataFrame(out).reset_index(drop=True) if out else pd.DataFrame(index=range(len(table)))


def item_stats(batch: Batch, settings: Features) -> pd.DataFrame:
    """Daily snapshots per item: age, new flag, impression counts and smoothed CTR per window.

    A row stamped at t counts impressions strictly before t (see history.py), so an
    impression never sees its own click. The prior is the global CTR before t.
    """
    imp, tl = batch.impressions, batch.timeline
    n = len(batch.catalog)
    shown = cumulative(imp["item"].to_numpy(), imp["day"].to_numpy(), n, tl.n_days)
    clicks = cumulative(
        imp["item"].to_numpy(), imp["day"].to_numpy(), n, tl.n_days, imp["clicked"].to_numpy(np.float64)
    )
    prior = prior_ctr(clicks, shown)
    # clicks over expected clicks (COEC): each impression expects its day's CTR at its
    # position, so an item the legacy engine showed low is not mistaken for a bad one
    expected = cumulative(imp["item"].to_numpy(), imp["day"].to_numpy(), n, tl.n_days, expected_clicks(imp))
    pseudo = settings.ctr_prior_strength * np.nan_to_num(prior, nan=1.0)[None, :]
    item, snap, stamp = snapshot_rows(batch.catalog["created_at"], tl)
    age = ((stamp - batch.catalog["created_at"].iloc[item].reset_index(drop=True)) / DAY).to_numpy()
    out = {
        "item_id": batch.catalog["item_id"].astype("string").iloc[item].reset_index(drop=True),
        "event_timestamp": stamp,
        "item_age_days": age.astype(np.float32),
        "item_is_new": (age < settings.new_item_days).astype(np.int64),
    }
    for days, w in windows(settings.windows_days):
        shown_w, clicks_w = windowed(shown, days), windowed(clicks, days)
        out[f"item_impressions_{w}"] = shown_w[item, snap].astype(np.int64)
        ctr = smoothed_ctr(clicks_w, shown_w, prior, settings.ctr_prior_strength)
        out[f"item_ctr_{w}"] = ctr[item, snap].astype(np.float32)
        coec = (clicks_w + pseudo) / (windowed(expected, days) + pseudo)
        out[f"item_coec_{w}"] = coec[item, snap].astype(np.float32)
    return pd.DataFrame(out)


def expected_clicks(imp: pd.DataFrame) -> np.ndarray:
    """Per impression: the CTR of all impressions on its day at its position.

    A snapshot sums these over days before it only, like every other count.
    """
    day = imp["day"].to_numpy(np.int64)
    pos = imp["position"].to_numpy(np.int64)
    width = int(pos.max(initial=0)) + 1
    cell = day * width + pos
    shown = np.bincount(cell)
    clicked = np.bincount(cell, weights=imp["clicked"].to_numpy(np.float64), minlength=len(shown))
    return (clicked / np.maximum(shown, 1))[cell]


def vectors(matrix: np.ndarray) -> pa.Array:
    """(n, dim) float32 -> a list<float> column, one vector per row (Feast Array(Float32))."""
    n, dim = matrix.shape
    offsets = pa.array(np.arange(0, (n + 1) * dim, dim, dtype=np.int32))
    return pa.ListArray.from_arrays(offsets, pa.array(matrix.reshape(-1).astype(np.float32)))


def versions(stamps: pd.Series) -> pa.Array:
    """Each row's stamp as int64 microseconds since the epoch: the ``<view>_version`` feature.

    Views with array features carry it so that a point-in-time join can select rows by
    this scalar and read the arrays back by (key, version) (see training.py), and so
    that serving can see how old a value is.
    """
    return pa.array(pd.Series(stamps).dt.tz_convert("UTC").astype("datetime64[us, UTC]").astype("int64"))


def item_text(batch: Batch, embed: Embed) -> pa.Table:
    """One row per item stamped at its creation: the embedding of its title and description."""
    c = batch.catalog
    vecs = np.asarray(embed(item_text_inputs(c)), dtype=np.float32)
    if vecs.shape[0] != len(c):
        raise ValueError(f"embed returned {vecs.shape[0]} vectors for {len(c)} item texts")
    return pa.table(
        {
            "item_id": pa.array(c["item_id"].astype(str)),
            "event_timestamp": pa.array(c["created_at"]),
            "item_text_version": versions(c["created_at"]),
            "item_embedding": vectors(vecs),
        }
    )
