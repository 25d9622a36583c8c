"""The collaborative retriever of feeds: a shopper's items by the learned factors of the cf candidate.

`shoprank package` writes the factors of a trained collaborative-filtering candidate
(:meth:`shoprank.models.cf.CollaborativeModel.retrieval_arrays`) into the bundle, items in
the bundle's row order. A shopper with a learned row gets the items of highest
``item_bias + <user, item>``; a rare or unknown shopper gets none from it (the fallback
row says nothing about one person's taste), nor do items without their own row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from shoprank.retrieval.clicks import same_items

FACTORS = "factors.npz"


@dataclass(frozen=True)
class Factors:
    user_row: dict[str, int]  # shopper id -> row of user_factors
    user_factors: np.ndarray  # (users, dim)
    item_factors: np.ndarray  # (bundle items, dim); zeros where an item has no row of its own
    item_bias: np.ndarray  # (bundle items,)
    has_item: np.ndarray  # (bundle items,) bool: the item has a learned row

    def scores(self, user_id: str | None) -> np.ndarray | None:
        """The shopper's score of every bundle item (-inf where the item has no row), or None."""
        row = self.user_row.get(user_id) if user_id is not None else None
        if row is None:
            return None
        out = self.item_bias + self.item_factors @ self.user_factors[row]
        return np.where(self.has_item, out, -np.inf)


def write_factors(arrays: dict[str, np.ndarray], item_ids: np.ndarray, folder: Path) -> dict:
    """``arrays`` (ids and factors of users and items) in the bundle's item order, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    where = {item: r for r, item in enumerate(arrays["item_ids"].tolist())}
    rows = np.array([where.get(str(i), -1) for i in item_ids], dtype=np.int64)
    has = rows >= 0
    dim = arrays["item_factors"].shape[1]
    items = np.zeros((len(item_ids), dim), np.float32)
    items[has] = arrays["item_factors"][rows[has]]
    bias = np.zeros(len(item_ids), np.float32)
    bias[has] = arrays["item_bias"][rows[has]]
    np.savez(
        folder / FACTORS,
        item_ids=np.asarray(item_ids, dtype=str),
        user_ids=arrays["user_ids"],
        user_factors=arrays["user_factors"],
        item_factors=items,
        item_bias=bias,
        has_item=has,
    )
    return {"users": int(len(arrays["user_ids"])), "items": int(has.sum()), "dim": int(dim)}


def read_factors(folder: Path, item_ids: np.ndarray) -> Factors | None:
    """The bundle's factors, checked against the catalog's item order; None when it has none."""
    path = folder / FACTORS
    if not path.is_file():
        return None
    with np.load(path) as z:
        same_items(path, z["item_ids"], np.asarray(item_ids))
        users = z["user_ids"].tolist()
        return Factors(
            {u: r for r, u in enumerate(users)},
            z["user_factors"],
            z["item_factors"],
            z["item_bias"],
            z["has_item"].astype(bool),
        )
