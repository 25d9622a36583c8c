"""The click tables of recommendation feeds, computed from a batch's impressions at `shoprank package`.

- :class:`NeighbourTable`: for every item, its top ``n`` co-clicked items (CSR, best first)
- :func:`co_clicked`: two items are co-clicked when one shopper clicked both within a span
  of ``window`` consecutive clicks (the clicks of one response included). A pair counts
  once per shopper, and its weight is ``shoppers(a, b) / sqrt(shoppers(a) * shoppers(b))``
  (cosine of the items' shopper sets), so a best seller is not everyone's neighbour.
- :func:`recent_clicks`: clicks per item over the batch's last ``days`` days (popular items)

Both are deterministic: clicks are ordered by shopper, time, position and item before
anything is counted, and ties are broken by item row. Rows are the bundle's item rows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

CO_CLICKED = "co_clicked.npz"
RECENT_CLICKS = "recent_clicks.npz"
SUMMARY = "recommend.json"


@dataclass
class NeighbourTable:
    """Row ``i``'s neighbours are ``indices[indptr[i]:indptr[i + 1]]``, best first, with their weights."""

    indptr: np.ndarray  # (items + 1,) int64
    indices: np.ndarray  # item rows, int32
    weights: np.ndarray  # float32

    @classmethod
    def empty(cls, n_items: int) -> NeighbourTable:
        return cls(np.zeros(n_items + 1, np.int64), np.zeros(0, np.int32), np.zeros(0, np.float32))

    def of(self, row: int) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = self.indptr[row], self.indptr[row + 1]
        return self.indices[lo:hi], self.weights[lo:hi]

    @property
    def pairs(self) -> int:
        return len(self.indices)


def click_rows(impressions: pd.DataFrame, item_ids: np.ndarray) -> pd.DataFrame:
    """The clicks of ``impressions`` on known items: user_id, ts, position and the item's row, in
    shopper, time order (within a response, the item shown higher counts as the later click)."""
    clicks = impressions.loc[impressions["clicked"] == 1, ["user_id", "ts", "position", "item_id"]]
    row_of = pd.Series(np.arange(len(item_ids)), index=pd.Index(item_ids.astype(str)))
    rows = clicks["item_id"].astype(str).map(row_of)
    out = clicks.assign(row=rows).dropna(subset=["row"]).astype({"row": np.int64, "user_id": str})
    return out.sort_values(
        ["user_id", "ts", "position", "row"], ascending=[True, True, False, True], kind="stable"
    ).reset_index(drop=True)[["user_id", "ts", "row"]]


def co_clicked(clicks: pd.DataFrame, n_items: int, window: int, keep: int) -> NeighbourTable:
    """The top ``keep`` co-clicked items of every item (see the module's description)."""
    user = pd.factorize(clicks["user_id"], sort=True)[0].astype(np.int64)
    item = clicks["row"].to_numpy(np.int64)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for lag in range(1, min(window, len(item))):
        same = (user[lag:] == user[:-lag]) & (item[lag:] != item[:-lag])
        u, a, b = user[lag:][same], item[lag:][same], item[:-lag][same]
        parts += [(u, a, b), (u, b, a)]
    if not parts:
        return NeighbourTable.empty(n_items)
    u, a, b = (np.concatenate(x) for x in zip(*parts, strict=True))
    _, a, b = _distinct(u, a, b)  # a pair counts once per shopper
    a, b, together = _runs(a, b)
    _, clicked = _distinct(user, item)
    shoppers = np.bincount(clicked, minlength=n_items).astype(np.float64)
    weight = together / np.sqrt(shoppers[a] * shoppers[b])
    order = np.lexsort((b, -weight, a))  # per item: heaviest first, then by row
    a, b, weight = a[order], b[order], weight[order]
    starts = np.searchsorted(a, np.arange(n_items + 1))
    rank = np.arange(len(a)) - starts[a]
    kept = rank < keep
    a, b, weight = a[kept], b[kept], weight[kept]
    return NeighbourTable(
        np.searchsorted(a, np.arange(n_items + 1)).astype(np.int64),
        b.astype(np.int32),
        weight.astype(np.float32),
    )


def _distinct(*columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """The distinct rows of parallel integer columns, sorted."""
    order = np.lexsort(columns[::-1])
    sorted_cols = [c[order] for c in columns]
    new = np.ones(len(order), dtype=bool)
    if len(order):
        new[1:] = np.any([np.diff(c) != 0 for c in sorted_cols], axis=0)
    return tuple(c[new] for c in sorted_cols)


def _runs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The distinct pairs of ``a`` and ``b`` and how often each occurs."""
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    start = np.flatnonzero(np.r_[True, (np.diff(a) != 0) | (np.diff(b) != 0)])
    return a[start], b[start], np.diff(np.r_[start, len(a)]).astype(np.float64)


def recent_clicks(clicks: pd.DataFrame, n_items: int, days: int) -> np.ndarray:
    """(items,) clicks of the last ``days`` days before the batch's last click."""
    if clicks.empty:
        return np.zeros(n_items, np.int64)
    ts = pd.to_datetime(clicks["ts"], utc=True)
    recent = clicks["row"].to_numpy()[(ts > ts.max() - pd.Timedelta(days=days)).to_numpy()]
    return np.bincount(recent, minlength=n_items).astype(np.int64)


def write_tables(
    impressions: pd.DataFrame, item_ids: np.ndarray, folder: Path, window: int, neighbours: int, days: int
) -> dict:
    """Compute both tables for the bundle's items and write them into ``folder``; returns a summary."""
    clicks = click_rows(impressions, item_ids)
    table = co_clicked(clicks, len(item_ids), window, neighbours)
    popular = recent_clicks(clicks, len(item_ids), days)
    folder.mkdir(parents=True, exist_ok=True)
    ids = item_ids.astype(str)
    np.savez(
        folder / CO_CLICKED, item_ids=ids, indptr=table.indptr, indices=table.indices, weights=table.weights
    )
    np.savez(folder / RECENT_CLICKS, item_ids=ids, clicks=popular)
    summary = {
        "clicks": len(clicks),
        "window": window,
        "neighbours": neighbours,
        "pairs": table.pairs,
        "items_with_neighbours": int((np.diff(table.indptr) > 0).sum()),
        "popular_days": days,
        "recently_clicked_items": int((popular > 0).sum()),
    }
    (folder / SUMMARY).write_text(json.dumps(summary, indent=2))
    return summary


def read_tables(folder: Path, item_ids: np.ndarray) -> tuple[NeighbourTable, np.ndarray]:
    """The co-click table and recent clicks of ``folder``, checked against the catalog's item order."""
    with np.load(folder / CO_CLICKED) as z:
        same_items(folder / CO_CLICKED, z["item_ids"], item_ids)
        table = NeighbourTable(z["indptr"], z["indices"], z["weights"])
    with np.load(folder / RECENT_CLICKS) as z:
        same_items(folder / RECENT_CLICKS, z["item_ids"], item_ids)
        popular = z["clicks"]
    return table, popular


def same_items(path: Path, got: np.ndarray, want: np.ndarray) -> None:
    """A bundle table's items must be the catalog's, in order."""
    if len(got) != len(want) or not np.array_equal(got.astype(str), want.astype(str)):
        diff = next(
            (i for i, (x, y) in enumerate(zip(got, want, strict=False)) if x != y), min(len(got), len(want))
        )
        raise ValueError(
            f"{path}: its {len(got)} items are not the catalog's {len(want)} in order "
            f"(first difference at row {diff}); package the champion again"
        )
