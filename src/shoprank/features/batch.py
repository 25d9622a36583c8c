"""A validated batch read for feature computation: lean columns, integer entity codes."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.data.io import table_path
from shoprank.features.history import Timeline

IMPRESSION_COLUMNS = ["ts", "user_id", "query", "item_id", "position", "clicked"]


class BatchError(ValueError):
    """The batch folder is missing a table or its tables do not fit together."""


@dataclass
class Batch:
    catalog: pd.DataFrame  # contract columns, one row per item
    users: pd.DataFrame  # user_id, created_at (+ region, device when present)
    impressions: pd.DataFrame  # IMPRESSION_COLUMNS + item (catalog row) + user (users row) + day
    timeline: Timeline


def _read(folder: Path, name: str, columns: list[str] | None = None, **kwargs) -> pd.DataFrame:
    path = table_path(folder, name)
    if not path.is_file():
        raise BatchError(f"{path}: no {name} table in the batch folder")
    return pd.read_parquet(path, columns=columns, **kwargs)


def _codes(ids: pd.Series, known: pd.Series, what: str) -> np.ndarray:
    """Row number in ``known`` of each id; an id that is not there is an error."""
    codes = pd.Categorical(ids, categories=pd.Index(known)).codes
    if (bad := codes < 0).any():
        examples = pd.Series(ids[bad]).astype(str).unique()[:5].tolist()
        raise BatchError(
            f"{int(bad.sum())} impression(s) name a {what} that is not in the batch, e.g. {examples}"
        )
    return codes.astype(np.int64)


def read_batch(folder: Path | str) -> Batch:
    """Read catalog, users and impressions of a validated batch folder.

    The tables have passed the contract and quality checks upstream, so only what
    features need is re-checked here: that every impression names a known item and user.
    Id columns are read dictionary-encoded, so 6M impressions cost codes, not strings.
    """
    folder = Path(folder)
    catalog = _read(folder, "catalog").reset_index(drop=True)
    users = _read(folder, "users").reset_index(drop=True)
    imp = _read(folder, "impressions", IMPRESSION_COLUMNS, read_dictionary=["user_id", "query", "item_id"])
    imp["item"] = _codes(imp["item_id"], catalog["item_id"], "item")
    imp["user"] = _codes(imp["user_id"], users["user_id"], "user")
    imp["clicked"] = imp["clicked"].astype(np.int8)
    timeline = Timeline.of(imp["ts"])
    imp["day"] = timeline.day_of(imp["ts"])
    return Batch(catalog, users, imp, timeline)
