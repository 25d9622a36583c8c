"""The packaged catalog as serving reads it: items, their vectors and the arrays requests use.

Row ``i`` of every array is the item ``item_ids[i]`` (the bundle's items.parquet is in
the order of the item-embedding table). Arrays are built once at load, so filtering and
re-ranking index them instead of the DataFrame.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from shoprank.inputs.declare import longest_window
from shoprank.inputs.texts import item_texts
from shoprank.models.attributes import Filled
from shoprank.ranking.features import is_user_column

DISPLAY = ("item_id", "title", "description", "created_at")  # shown, never a model input
ATTRIBUTES = ("colour", "material", "size", "brand")  # the attributes an answer shows (with any filled one)


@dataclass
class Catalog:
    items: pd.DataFrame  # the packaged item table: display columns and features
    item_ids: np.ndarray
    row_of: dict[str, int]
    vectors: np.ndarray  # (items, dim) text embeddings, the retriever's
    item_columns: list[str]  # item feature columns (what the online store refreshes)
    user_columns: list[str]  # user feature columns of the packaged user table
    is_new: np.ndarray
    category: np.ndarray
    category_lower: np.ndarray
    price: np.ndarray
    popularity: np.ndarray  # the scores when the model fails
    texts: pd.Series  # item id -> its text (title, description): what a fine-tuned champion tokenizes
    filled: Filled | None = None  # attribute -> value by item id, where the catalogue's field is empty

    @classmethod
    def build(
        cls, items: pd.DataFrame, users: pd.DataFrame, vectors: np.ndarray, filled: Filled | None = None
    ) -> Catalog:
        item_ids = items["item_id"].astype(str).to_numpy()
        category = items["category"].astype("string").fillna("").to_numpy(dtype=object)
        return cls(
            items=items,
            item_ids=item_ids,
            row_of={item: r for r, item in enumerate(item_ids)},
            vectors=vectors,
            item_columns=[c for c in items.columns if c not in DISPLAY and not is_user_column(c)],
            user_columns=[c for c in users.columns if c != "user_id"],
            is_new=items.get("item_is_new", pd.Series(0, index=items.index)).fillna(0).to_numpy(),
            category=category,
            category_lower=np.char.lower(category.astype(str)),
            price=items["price"].astype(float).to_numpy(),
            popularity=popularity(items),
            texts=item_texts(items),
            filled=filled,
        )

    def __len__(self) -> int:
        return len(self.item_ids)

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def attributes(self, r: int) -> dict[str, dict[str, Any]]:
        """Item ``r``'s attribute values: the catalogue's, or a filled one marked ``inferred``."""
        item, item_id = self.items.iloc[r], str(self.item_ids[r])
        filled = self.filled or {}
        out: dict[str, dict[str, Any]] = {}
        for c in dict.fromkeys([*ATTRIBUTES, *filled]):
            own = item.get(c)
            if own is not None and not pd.isna(own):
                out[c] = {"value": str(own), "inferred": False}
            elif c in filled and item_id in filled[c].index:
                out[c] = {"value": str(filled[c][item_id]), "inferred": True}
        return out

    def rows_of(self, item_ids: Sequence[str]) -> np.ndarray:
        """The rows of known item ids, in order."""
        return np.fromiter((self.row_of[i] for i in item_ids), dtype=np.int64, count=len(item_ids))

    def mask(self, filters: Mapping[str, Any] | None) -> np.ndarray | None:
        """Items that pass a search's filters (category substring, price range); None: all do."""
        if not filters:
            return None
        mask = np.ones(len(self), dtype=bool)
        cat = (filters.get("category") or "").strip().lower()
        if cat:
            mask &= np.char.find(self.category_lower, cat) >= 0
        lo, hi = filters.get("price_min"), filters.get("price_max")
        if lo is not None:
            mask &= self.price >= lo
        if hi is not None:
            mask &= self.price <= hi
        return mask


def popularity(items: pd.DataFrame) -> np.ndarray:
    """The scores when the model fails: the item's smoothed click rate over its longest window."""
    column = f"item_ctr_{longest_window(items.columns)}"
    return items[column].fillna(0).to_numpy() if column in items else np.zeros(len(items))
