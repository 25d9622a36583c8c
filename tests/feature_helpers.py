"""Helpers of the feature tests: the project's Feast repository, feature value comparison and a
hand-made batch whose every feature value can be worked out by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.artifacts import FEATURE_SERVICE
from shoprank.data.io import write_tables

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "features"  # the project's Feast repository; tests and benchmarks use private copies
SERVICE = FEATURE_SERVICE
T0 = pd.Timestamp("2026-03-01", tz="UTC")


def same(a, b) -> bool:
    """Feature values equal, nulls equal (None or NaN), arrays element-wise as float32 or str."""

    def null(x) -> bool:
        return x is None or x is pd.NA or (isinstance(x, float | np.floating) and np.isnan(x))

    if null(a) or null(b):
        return null(a) and null(b)
    if isinstance(a, list | tuple | np.ndarray) or isinstance(b, list | tuple | np.ndarray):
        a, b = list(a), list(b)
        if a and isinstance(a[0], str | np.str_):
            return a == b
        return np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return np.float32(a) == np.float32(b)


def text_length_embed(texts: list[str]) -> np.ndarray:
    """A stand-in encoder whose vectors depend on the text: (len, words, 1)."""
    return np.array([[len(t), len(t.split()), 1.0] for t in texts], dtype=np.float32)


def _hand_batch(folder: Path) -> Path:
    """Two items, two users, three days. Item B is listed mid-batch (2026-03-02 10:00)."""
    ts = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    catalog = pd.DataFrame(
        {
            "item_id": ["A", "B"],
            "title": ["red shoe", "blue tent"],
            "description": ["a shoe", "a tent"],
            "category": ["Shoes > Running", "Outdoors > Camping"],
            "brand": ["acme", "zelt"],
            "price": [50.0, 200.0],
            "attributes": ['{"colour": "red", "features": ["light"]}', "{}"],
            "created_at": [ts("2025-06-01"), ts("2026-03-02 10:00")],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": ["U", "V"],
            "created_at": [ts("2025-01-01"), ts("2025-02-01")],
            "region": ["north", "south"],
            "device": ["app", "mobile"],
        }
    )
    rows = [  # request, ts, user, query, item, position, clicked
        ("r1", "2026-03-01 09:00", "U", "red shoe", "A", 1, 1),
        ("r2", "2026-03-01 15:00", "V", "", "A", 1, 0),
        ("r3", "2026-03-02 00:00", "U", "Red Shoe", "A", 1, 1),  # exactly at the day-2 snapshot
        ("r4", "2026-03-02 12:00", "V", "tent", "A", 1, 1),
        ("r4", "2026-03-02 12:00", "V", "tent", "B", 2, 0),
        ("r5", "2026-03-03 08:00", "U", "", "B", 1, 1),
        ("r5", "2026-03-03 08:00", "U", "", "A", 2, 0),
    ]
    imp = pd.DataFrame(
        rows, columns=["request_id", "ts", "user_id", "query", "item_id", "position", "clicked"]
    )
    imp["ts"] = pd.to_datetime(imp["ts"], utc=True)
    imp["purchased"], imp["propensity"] = 0, 0.5
    write_tables(folder, {"catalog": catalog, "users": users, "impressions": imp})
    return folder
