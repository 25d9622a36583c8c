"""Online features for serving: Feast's online store behind one function, a short cache, fallbacks.

:func:`read_online` is the only place the online store is read (by default through
:class:`~shoprank.features.online.OnlineReader`, Feast's online store without Feast's
Python read path). :class:`OnlineFeatures` keeps each item's
values for ``feature_ttl_s`` seconds (the store changes once per materialisation), so a
hot request reads the store only for what is stale. When the store fails, values come
from the packaged item and user tables (the snapshot taken at `shoprank package`) and
the answer says so; the store is retried after ``store_retry_s``.

The query's embedding is a feature too (the ``query_text`` view, keyed by
:func:`~shoprank.features.queries.query_id`, computed offline by the serving encoder
from the normalised text): :meth:`OnlineFeatures.fetch` returns it when it reads the
store anyway, and :meth:`OnlineFeatures.query_vector` reads it alone (one entity row: the
query, no item, no user) when nothing else needs the store.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shoprank.logs import log

logger = logging.getLogger(__name__)

USER_COLUMNS = (
    "region",
    "device",
    "user_clicks",
    "user_price_pref",
    "recent_items",
    "recent_categories",
)


def open_online_store(settings: Any, service: str) -> Any:
    """What :func:`read_online` reads from: shoprank's direct reader of Feast's online store."""
    from shoprank.features.online import OnlineReader

    return OnlineReader(settings, service)


def read_online(store: Any, service: str, entity_rows: list[dict[str, str]]) -> pd.DataFrame:
    """Online values of ``service`` for ``entity_rows``: one row each, in order (nulls where unknown).

    ``store`` is an :class:`~shoprank.features.online.OnlineReader` (the service's default:
    the same values as Feast's ``get_online_features``, without Feast's slow Python path)
    or a Feast ``FeatureStore`` (read through Feast itself).
    """
    from shoprank.features.online import OnlineReader

    if isinstance(store, OnlineReader):
        return store.read(entity_rows)
    from shoprank.features.store import online_features

    return online_features(store, service, entity_rows)


def read_query_vector(store: Any, service: str, query_id: str) -> np.ndarray | None:
    """The ``query_embedding`` of ``query_id`` in the online store, None when the store lacks it.

    One entity row (no item, no user). Through an
    :class:`~shoprank.features.online.OnlineReader` the columns are read without building
    a DataFrame, which is most of the cost of such a small read; a Feast
    ``FeatureStore`` goes through :func:`read_online`.
    """
    from shoprank.features.online import OnlineReader

    row = [{"item_id": "", "user_id": "", "query_id": query_id}]
    if isinstance(store, OnlineReader):
        column = store.read_columns(row).get("query_embedding")
    else:
        df = read_online(store, service, row)
        column = df["query_embedding"].to_numpy() if "query_embedding" in df else None
    return None if column is None or not len(column) else as_vector(column[0])


def as_vector(value: Any) -> np.ndarray | None:
    """A stored embedding as an owned float32 vector; None for a null or empty value.

    Owned: a value read for many entity rows is a view of the whole decoded matrix, which
    a cache entry must not keep alive.
    """
    if not hasattr(value, "__len__") or not len(value):  # None, NaN, pd.NA, []
        return None
    return np.array(value, dtype=np.float32)


def _same(old: pd.Series, new: np.ndarray) -> bool:
    """Would writing ``new`` over ``old`` change nothing? (NaN equals NaN; values compared in
    ``old``'s dtype, as they would be stored: None is <NA> in a string column.)"""
    try:
        if old.dtype.kind in "fc" and new.dtype.kind in "fc":
            return bool(np.array_equal(old.to_numpy(), new, equal_nan=True))
        return bool(old.reset_index(drop=True).equals(pd.Series(new, dtype=old.dtype)))
    except Exception:  # an unusual value: treat as changed (a rebuild is always correct)
        return False


@dataclass
class Lookup:
    items: pd.DataFrame  # item feature columns of the requested rows, in order
    user: dict[str, Any]  # user feature values (empty for an unknown user)
    user_known: bool
    query_embedding: np.ndarray | None  # from the store, when it was read and has the query
    fallback: str | None = None  # why fallbacks were used, None when the store answered
    store_calls: int = 0
    stats: dict[str, int] = field(default_factory=dict)


def is_user_column(name: str) -> bool:
    return name in USER_COLUMNS or name.startswith("user_")


class OnlineFeatures:
    """Item, user and query features of one request, from the store or the packaged tables."""

    def __init__(
        self,
        open_store: Callable[[], Any],
        service: str,
        items: pd.DataFrame,
        item_columns: list[str],
        users: pd.DataFrame,
        user_columns: list[str],
        ttl_s: float,
        retry_s: float,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 1.0,
        refresh_timeout_s: float = 60.0,
    ):
        self._open = open_store
        self.service = service
        self.item_ids = items["item_id"].astype(str).tolist()
        self.item_columns = item_columns
        self.values = items[item_columns].reset_index(drop=True).copy()  # packaged, then refreshed
        self.fetched = np.full(len(items), -np.inf)
        self.version = 0  # bumped whenever item values change (derived arrays are rebuilt)
        self.pinned: dict[
            str, np.ndarray
        ] = {}  # column -> rows a catalogue update set: the store's are older
        self.users = users.set_index("user_id") if "user_id" in users else users
        self.user_columns = user_columns
        self._user_cache: dict[str, tuple[float, dict[str, Any]]] = {}
        self.ttl, self.retry, self.clock = ttl_s, retry_s, clock
        self._store: Any = None
        self._down_until = -np.inf
        self.last_error: str | None = None
        self._lock = threading.Lock()
        self.timeout, self.refresh_timeout = timeout_s, refresh_timeout_s
        self._token: tuple | None = None  # the store's change token at the last full refresh
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="online-store")

    def store(self) -> Any:
        if self._store is None:
            self._store = self._open()
        return self._store

    def healthy(self) -> bool:
        """Did the last read of the online store succeed?"""
        return self.last_error is None

    def probe(self) -> bool:
        """Does the store answer now? One single-item read with the request deadline.

        Readiness asks this rather than :meth:`healthy`: the last read may be a minute old
        (the background refresh) and each worker has its own. A success closes the circuit,
        so requests use the store again at once; a failure opens it and is logged.
        """
        rows = [{"item_id": self.item_ids[0], "user_id": "", "query_id": ""}] if self.item_ids else []
        try:
            if rows:
                self._read(rows, self.timeout)
            else:
                self.store()
        except Exception as exc:  # any failure is "not ok"; its text is for the log only
            self._failed(exc)
            log(logger, "online store probe failed", error=self.last_error, level=logging.WARNING)
            return False
        self._down_until = -np.inf
        self.last_error = None
        return True

    def _read(self, entity_rows: list[dict[str, str]], timeout: float) -> pd.DataFrame:
        """:func:`read_online` with a deadline: a hung or slowly failing store must not hold a request."""
        future = self._pool.submit(lambda: read_online(self.store(), self.service, entity_rows))
        try:
            return future.result(timeout=timeout)
        except FutureTimeout:
            raise TimeoutError(f"online store did not answer within {timeout:g} s") from None

    def _failed(self, exc: Exception) -> None:
        self._down_until = self.clock() + self.retry  # from the end of the failure: slow failures count
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]

    def _packaged_user(self, user_id: str | None) -> tuple[dict[str, Any], bool]:
        if user_id and user_id in self.users.index:
            row = self.users.loc[user_id]
            return {c: row[c] for c in self.user_columns if c in row.index}, True
        return {}, False

    def query_vector(self, query_id: str) -> np.ndarray | None:
        """The store's embedding of ``query_id``: one entity read, with the request deadline.

        None when the store lacks the query, is down (the circuit is open) or fails; a
        failure opens the circuit like any other read. Never raises.
        """
        if not query_id or self.clock() < self._down_until:
            return None
        future = self._pool.submit(lambda: read_query_vector(self.store(), self.service, query_id))
        try:
            vec = future.result(timeout=self.timeout)
        except Exception as exc:  # any store failure, a timeout included: the encoder answers instead
            if isinstance(exc, FutureTimeout):
                exc = TimeoutError(f"online store did not answer within {self.timeout:g} s")
            self._failed(exc)
            log(logger, "online store failed on a query read", error=self.last_error, level=logging.WARNING)
            return None
        self._down_until = -np.inf
        self.last_error = None
        return vec

    def fetch(self, rows: np.ndarray, user_id: str | None, query_id: str, want_query: bool = False) -> Lookup:
        """Item and user features of a request; with ``want_query``, the query's embedding too.

        The query's embedding rides on the item/user read when one is needed; when the
        items and the user are fresh, ``want_query`` makes one query-only read
        (:meth:`query_vector`). ``Lookup.query_embedding`` is None when the store was not
        read, failed, or does not have the query.
        """
        now = self.clock()
        stale = rows[self.fetched[rows] < now - self.ttl] if self.ttl > 0 else rows
        cached_user = self._user_cache.get(user_id or "")
        user_fresh = user_id is None or (cached_user is not None and cached_user[0] >= now - self.ttl)
        need_store = len(stale) > 0 or not user_fresh or (query_id and self.ttl <= 0)
        fallback, calls, q_vec = None, 0, None
        user: dict[str, Any] | None = cached_user[1] if user_fresh and cached_user else None
        if not need_store and want_query and query_id:
            # only the query is wanted: the one-entity read. Items and user are fresh, so a
            # failure degrades nothing (the encoder gives the same vector): no fallback is named
            calls = int(now >= self._down_until)
            q_vec = self.query_vector(query_id)
        elif need_store and now < self._down_until:
            fallback = "online_store_unreachable"
        elif need_store:
            ask = stale if len(stale) else rows[:1]
            entity_rows = [
                {"item_id": self.item_ids[r], "user_id": user_id or "", "query_id": query_id} for r in ask
            ]
            try:
                calls = 1
                df = self._read(entity_rows, self.timeout)
            except Exception as exc:  # any store failure: serve from fallbacks, never fail the request
                self._failed(exc)
                log(
                    logger,
                    "online store failed; serving fallbacks",
                    error=self.last_error,
                    level=logging.WARNING,
                )
                fallback = "online_store_unreachable"
            else:
                self._down_until = -np.inf
                self.last_error = None
                if len(stale):  # (a user-only read touches no item values)
                    self._update_items(ask, df, now)
                if user_id is not None and not user_fresh:
                    user = self._user_row(df)
                    with self._lock:
                        self._user_cache[user_id] = (now, user)
                if query_id and "query_embedding" in df:
                    q_vec = as_vector(df["query_embedding"].iloc[0])
        if user is None:  # neither cached nor read: the packaged snapshot (or nothing, for a new user)
            user, known = self._packaged_user(user_id)
        else:
            known = bool(user)
        items = self.values.iloc[rows].reset_index(drop=True)
        return Lookup(items, user, known, q_vec, fallback, calls)

    def refresh_all(self, chunk: int = 2000, pause_s: float = 0.0, if_changed: bool = False) -> int:
        """Re-read every item from the store (skipped while it is down); returns the items refreshed.

        ``pause_s`` sleeps between chunks (a background refresh yields to requests). With
        ``if_changed``, a store that can tell it has not changed since the last full refresh
        (the SQLite reader's :meth:`~shoprank.features.online.OnlineReader.change_token`) is
        not re-read: the items are marked fresh and 0 is returned.
        """
        token = None
        if self.clock() >= self._down_until:
            try:
                store = self.store()
                token = store.change_token() if hasattr(store, "change_token") else None
            except Exception:  # the re-read below meets the failure and handles it
                token = None
            if if_changed and token is not None and token == self._token:
                self.fetched[:] = self.clock()
                return 0
        done = 0
        for start in range(0, len(self.item_ids), chunk):
            if start and pause_s > 0:
                time.sleep(pause_s)
            now = self.clock()
            if now < self._down_until:
                break
            rows = np.arange(start, min(start + chunk, len(self.item_ids)))
            entity_rows = [{"item_id": self.item_ids[r], "user_id": "", "query_id": ""} for r in rows]
            try:
                df = self._read(entity_rows, self.refresh_timeout)
            except Exception as exc:
                self._failed(exc)
                log(
                    logger, "online store failed during refresh", error=self.last_error, level=logging.WARNING
                )
                break
            self._update_items(rows, df, now)
            self.last_error = None
            done += len(rows)
        if done == len(self.item_ids):
            self._token = token  # taken before the reads: a change during them is caught next time
        return done

    def _update_items(self, rows: np.ndarray, df: pd.DataFrame, now: float) -> None:
        cols = [c for c in self.item_columns if c in df.columns]
        if not cols:
            return
        present = df[cols[0]].notna().to_numpy()  # an item the store does not have keeps packaged values
        if "price" in df:
            present = df["price"].notna().to_numpy()
        got = rows[present]
        if len(got):
            with self._lock:
                changed = False
                for c in cols:
                    j = self.values.columns.get_loc(c)
                    new, at = df[c].to_numpy()[present], got
                    if c in self.pinned:
                        keep = ~self.pinned[c][got]
                        new, at = new[keep], got[keep]
                    if pd.api.types.is_numeric_dtype(self.values[c].dtype):
                        new = pd.to_numeric(pd.Series(new), errors="coerce").to_numpy()
                    if not _same(self.values.iloc[at, j], new):
                        self.values.iloc[at, j] = new
                        changed = True
                self.fetched[got] = now
                if changed:  # derived item arrays are rebuilt only when a value moved
                    self.version += 1

    def catalogue_update(self, item_ids: list[str], appended: pd.DataFrame, changed: pd.DataFrame) -> None:
        """Items listed or changed since packaging (ranking/catalog_refresh.py), in one step.

        ``appended``: the item values of new items, whose rows follow the current ones (ids
        ``item_ids``); the store does not know them until the next pipeline run, so they are
        never read from it. ``changed``: catalogue values of known items (index: their rows),
        kept over the store's older ones from now on.
        """
        with self._lock:
            values = pd.concat([self.values, appended[self.item_columns]], ignore_index=True)
            pinned = {c: np.concatenate([m, np.zeros(len(appended), bool)]) for c, m in self.pinned.items()}
            rows = changed.index.to_numpy()
            for c in changed.columns:
                values.iloc[rows, values.columns.get_loc(c)] = changed[c].to_numpy()
                pinned.setdefault(c, np.zeros(len(values), bool))[rows] = True
            # values before version: a reader that sees the new version sees the new values
            self.values, self.pinned = values, pinned
            self.fetched = np.concatenate([self.fetched, np.full(len(appended), np.inf)])
            self.item_ids = [*self.item_ids, *item_ids]
            self.version += 1

    def _user_row(self, df: pd.DataFrame) -> dict[str, Any]:
        row = df.iloc[0]
        values = {c: row[c] for c in self.user_columns if c in df.columns}
        stats = [c for c in values if c.startswith("user_impressions_")]
        if stats and all(
            values[c] is None or (isinstance(values[c], float) and np.isnan(values[c])) for c in stats
        ):
            return {}  # the store has no such user
        return values
