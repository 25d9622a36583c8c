"""Daily snapshots of event history, computed without leakage.

A batch's impressions span days ``0 .. n_days - 1`` counted from ``day0`` (midnight UTC
of the first impression). Snapshot ``b`` is stamped at ``day0 + b days`` and counts only
events of days ``< b``, that is events strictly before its stamp; ``b`` runs from 0 (no
history) to ``n_days`` (every event of the batch: the snapshot that serving reads).
A point-in-time join gives an event at time ``ts`` the latest snapshot stamped at or
before ``ts``, so no snapshot it sees contains the event itself or anything later.

Counts are dense ``(entities, n_days + 1)`` matrices of cumulative sums: a window sum is
the difference of two columns, so every feature of every snapshot is one numpy
expression (60k entities x 57 snapshots is 3.4M cells: megabytes).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from shoprank.inputs.declare import window_label

DAY = pd.Timedelta(days=1)
US_PER_DAY = 86_400_000_000


@dataclass(frozen=True)
class Timeline:
    """Snapshot stamps of a batch: ``day0 + b days`` for ``b = 0 .. n_days``."""

    day0: pd.Timestamp  # midnight UTC of the first event
    n_days: int  # days holding events; snapshots are n_days + 1

    @classmethod
    def of(cls, ts: pd.Series) -> Timeline:
        if ts.empty:
            raise ValueError("no impressions: cannot build a timeline of feature snapshots")
        first, last = ts.min(), ts.max()
        day0 = first.floor("D")
        return cls(day0, int((last - day0) // DAY) + 1)

    @property
    def stamps(self) -> pd.DatetimeIndex:
        """(n_days + 1,) snapshot times, UTC."""
        return pd.date_range(self.day0, periods=self.n_days + 1, freq="D", unit="us")

    def day_of(self, ts: pd.Series) -> np.ndarray:
        """Day index of each timestamp (negative before ``day0``), int64."""
        return ((ts - self.day0) // DAY).to_numpy(dtype=np.int64)

    def last_snapshot_at(self, ts: pd.Series) -> np.ndarray:
        """Index of the latest snapshot stamped at or before each ``ts``, clipped to 0..n_days."""
        return np.clip(self.day_of(ts), 0, self.n_days)


def cumulative(
    entity: np.ndarray, day: np.ndarray, n_entities: int, n_days: int, weights: np.ndarray | None = None
) -> np.ndarray:
    """(n_entities, n_days + 1) sums of ``weights`` (default 1) over events of days ``< b``.

    ``entity`` and ``day`` are (n_events,) int arrays; column ``b`` is snapshot ``b``.
    """
    flat = entity.astype(np.int64) * n_days + day  # bincount: one pass, unlike np.add.at
    daily = np.bincount(flat, weights=weights, minlength=n_entities * n_days).reshape(n_entities, n_days)
    out = np.zeros((n_entities, n_days + 1), dtype=np.float64)
    np.cumsum(daily, axis=1, out=out[:, 1:])
    return out


DAYS_ALL = 1 << 30  # a window longer than any log: all history before the snapshot


def windows(settings: Iterable[int | str]) -> list[tuple[int, str]]:
    """``features.windows_days`` as (days for :func:`windowed`, column label): ``all`` spans everything."""
    return [(DAYS_ALL if w == "all" else int(w), window_label(w)) for w in settings]


def windowed(cum: np.ndarray, days: int) -> np.ndarray:
    """Sums over the ``days`` days before each snapshot: ``cum[:, b] - cum[:, b - days]``."""
    shifted = np.zeros_like(cum)
    if days < cum.shape[1]:
        shifted[:, days:] = cum[:, :-days]
    return cum - shifted


def prior_ctr(clicks: np.ndarray, impressions: np.ndarray) -> np.ndarray:
    """Global CTR before each snapshot, (n_days + 1,); NaN at snapshots with no history.

    The prior of snapshot ``b`` uses only events before it, like every other value.
    """
    total_i = impressions.sum(axis=0)
    total_c = clicks.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total_i > 0, total_c / np.maximum(total_i, 1), np.nan)


def smoothed_ctr(
    clicks: np.ndarray, impressions: np.ndarray, prior: np.ndarray, strength: float
) -> np.ndarray:
    """Beta-smoothed CTR: ``(clicks + strength * prior) / (impressions + strength)``.

    ``clicks`` and ``impressions`` are (entities, snapshots); ``prior`` is (snapshots,):
    an entity with no impressions gets the prior, one with many gets its own rate.
    """
    return (clicks + strength * prior[None, :]) / (impressions + strength)


def snapshot_rows(created: pd.Series, timeline: Timeline) -> tuple[np.ndarray, np.ndarray, pd.Series]:
    """Which (entity, snapshot) rows exist: each snapshot after creation, plus creation itself.

    ``created`` is (n_entities,) UTC timestamps. Returns ``entity`` (rows,) int64,
    ``snap`` (rows,) int64 = the snapshot whose history the row carries, and ``stamp``
    (rows,) the row's event timestamp. An entity created inside the batch gets a row
    stamped at its creation carrying the history of the snapshot before it (events
    strictly before its creation); entities created before ``day0`` start at snapshot 0.
    """
    stamps = timeline.stamps
    created_us = created.to_numpy(dtype="datetime64[us]").astype(np.int64)
    stamps_us = stamps.to_numpy(dtype="datetime64[us]").astype(np.int64)
    after = stamps_us[None, :] >= created_us[:, None]  # (n, snapshots): the entity exists
    entity, snap = np.nonzero(after)
    # creation rows: stamped at created_at, unless that is before day0 or exactly a snapshot
    inside = (created_us > stamps_us[0]) & ~np.isin(created_us, stamps_us)
    new = np.flatnonzero(inside)
    new_snap = np.searchsorted(stamps_us, created_us[new], side="right") - 1
    entity = np.concatenate([entity, new])
    snap = np.concatenate([snap, new_snap])
    stamp_us = np.concatenate([stamps_us[snap[: len(snap) - len(new)]], created_us[new]])
    order = np.lexsort((stamp_us, entity))
    stamp = pd.Series(pd.to_datetime(stamp_us[order], unit="us", utc=True))
    return entity[order], snap[order], stamp
