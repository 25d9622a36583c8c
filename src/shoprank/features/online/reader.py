"""The reader: resolves a feature service once, then reads its online values per request."""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoprank.artifacts import FEATURE_SERVICE
from shoprank.config import Features
from shoprank.features.online.decode import _BATCHED, _LISTS, _Decoder, _objects
from shoprank.features.online.layout import OnlineStoreMissing, _Column, _Fetched, _View
from shoprank.features.online.redis import _RedisStore
from shoprank.features.online.sqlite import _SQLiteStore
from shoprank.features.store import FeatureRepoError, open_store


class OnlineReader(_SQLiteStore, _RedisStore):
    """Online values of one feature service, read straight from Feast's online store.

    ``settings``: the ``features`` section of params.yaml (``repo``, ``online_store``,
    ``redis_url``); ``service``: a feature service of the repo's registry. See the
    :mod:`shoprank.features.online` docstring for what :meth:`read` returns. Thread-safe;
    reuse one reader per process. The fetch paths are in :mod:`.sqlite` and :mod:`.redis`,
    the resolution of views and the entity keys in :mod:`.layout`.
    """

    def __init__(self, settings: Features, service: str = FEATURE_SERVICE):
        from feast.infra.key_encoding_utils import serialize_entity_key

        store = open_store(settings)
        config = store.config
        self.service = service
        self.project: str = config.project
        self.store_type: str = config.online_store.type
        self._key_version: int = config.entity_key_serialization_version
        self._serialize = serialize_entity_key
        try:
            fs = store.get_feature_service(service)
        except Exception as exc:
            if type(exc).__name__ != "FeatureServiceNotFoundException":
                raise
            raise OnlineStoreMissing(
                f"feature service {service!r} is not in the registry of {settings.repo}: "
                "run `shoprank materialize` first"
            ) from exc
        self.views = self._resolve(store, fs)
        never = [v.name for v in self.views if not store.get_feature_view(v.name).materialization_intervals]
        if never:
            raise OnlineStoreMissing(
                f"views {never} of {service!r} were never materialised into the {self.store_type} "
                "online store: run `shoprank materialize`"
            )
        self.columns = [c.name for v in self.views for c in v.columns]
        if len(set(self.columns)) != len(self.columns):
            raise FeatureRepoError(f"feature service {service!r} has two features of the same name")
        self.join_keys = list(dict.fromkeys(k for v in self.views for k in v.row_keys))  # required
        # views of the same entities (same join keys, read from the same entity-row columns):
        # their keys are made once per read, and SQLite reads them with one VALUES list
        groups: dict[tuple, list[_View]] = {}
        for v in self.views:
            groups.setdefault((tuple(v.join_keys), tuple(v.row_keys)), []).append(v)
        self._groups = list(groups.values())
        self._statements: dict[tuple[tuple[int, int], ...], str] = {}  # SQLite query per batch shape
        self._entity_keys |= set(self.join_keys)  # returned when given, as Feast does: any entity's key
        self._decoder = _Decoder()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._redis: Any = None
        if self.store_type == "sqlite":
            path = Path(config.online_store.path)
            self.path = path if path.is_absolute() else Path(config.repo_path or ".") / path
            self._open_sqlite()
        elif self.store_type == "redis":
            self._setup_redis(config)
        else:
            raise FeatureRepoError(f"online store {self.store_type!r}: OnlineReader reads sqlite or redis")
        self._check_key_encoding()

    # -- reading -------------------------------------------------------------------------------
    def _columnar(self, entity_rows: Any) -> dict[str, list[Any]]:
        if isinstance(entity_rows, Mapping):
            cols = {k: list(v) for k, v in entity_rows.items()}
        else:
            rows = list(entity_rows)
            if not rows:
                raise ValueError("no entity rows")
            keys = list(rows[0])
            try:
                cols = {k: [r[k] for r in rows] for k in keys}
            except KeyError as exc:
                raise ValueError("all entity rows must have the same keys") from exc
        lengths = {len(v) for v in cols.values()}
        if len(lengths) != 1:
            raise ValueError(f"entity columns of different lengths: {sorted(lengths)}")
        missing = [k for k in self.join_keys if k not in cols]
        if missing:
            raise ValueError(f"entity rows lack the join keys {missing} of feature service {self.service!r}")
        return cols

    def read_columns(self, entity_rows: Any) -> dict[str, Any]:
        """The values as ``{column: numpy array}`` (object arrays for strings, lists and nulls).

        ``entity_rows``: a list of ``{join key: value}`` dicts (Feast's form) or one
        ``{join key: [values]}`` dict. Same columns, order and dtypes as :meth:`read`.
        """
        cols = self._columnar(entity_rows)
        n = len(next(iter(cols.values())))
        keys = [k for k in cols if k in self._entity_keys]
        out: dict[str, Any] = {k: _objects(cols[k]) for k in keys}
        if n == 0:
            for c in self.columns:
                out[c] = np.empty(0, object)
            return out
        fetched = self._fetch(cols, n)
        for view in self.views:
            inv, grid, nulls = fetched[view.name]  # nulls: None where decode finds them
            for js, at in zip(view.batches, view.batch_index, strict=True):
                col = view.columns[js[0]]
                null = None if nulls is None else nulls[:, at]
                if col.kind in _BATCHED:
                    arrays = self._batch(col, grid[:, at], null, inv, n)
                else:  # one column
                    decoded = self._decoder.decode(grid[:, js[0]], col, None if null is None else null[:, 0])
                    arrays = [self._assemble(decoded, inv, n, col.kind)]
                for j, arr in zip(js, arrays, strict=True):
                    out[view.columns[j].name] = arr
        return {k: out[k] for k in [*keys, *self.columns]}

    def _batch(self, col: _Column, blobs: np.ndarray, nulls: np.ndarray | None, inv: Any, n: int) -> list:
        """Scalar columns of one kind (``blobs``: unique entities x columns), decoded together.

        One decoding, one expansion to the rows and one conversion for all of them: the
        columns are the rows of a transposed matrix (each contiguous). The result equals
        :meth:`_assemble` column by column, which takes over when numbers have nulls.
        """
        m, k = blobs.shape
        if col.kind == "string":
            values = self._decoder.strings(blobs.ravel().tolist())
            matrix = np.fromiter(values, object, m * k).reshape(m, k)
            dtype: Any = object
        else:
            null = None if nulls is None else nulls.ravel()
            flat, null = self._decoder.decode(blobs.ravel(), col, null)
            if null is None:  # all null
                return [self._assemble(([None] * m, None), inv, n, col.kind) for _ in range(k)]
            matrix, grid_null = flat.reshape(m, k), null.reshape(m, k)
            if inv is not None:
                matrix, grid_null = matrix[inv], grid_null[inv]
            if matrix.dtype == object or grid_null.any():
                return [self._assemble((matrix[:, c], grid_null[:, c]), None, n, col.kind) for c in range(k)]
            dtype = np.float64 if matrix.dtype.kind == "f" else matrix.dtype  # as _assemble's
            inv = None  # applied
        if inv is not None:
            matrix = matrix[inv]
        columns = np.ascontiguousarray(matrix.T, dtype)
        return [columns[c] for c in range(k)]  # (iterating an array ends in a costly IndexError)

    def read(self, entity_rows: Any) -> pd.DataFrame:
        """One row per entity row, in order: the given join keys, then the service's features."""
        return to_frame(self.read_columns(entity_rows))

    def _unique(self, view: _View, cols: dict[str, list[Any]], n: int) -> tuple[np.ndarray | None, list]:
        """Unique entity keys of ``view`` and each row's index into them (None: already unique, in order)."""
        if len(view.row_keys) == 1:
            values: Any = cols[view.row_keys[0]]
            index: dict[Any, Any] = dict.fromkeys(values)  # first-seen order
            uniq = list(zip(index))  # 1-tuples
        else:
            values = list(zip(*(cols[k] for k in view.row_keys), strict=True))
            index = dict.fromkeys(values)
            uniq = list(index)
        if len(uniq) == n:
            return None, uniq
        index = dict(zip(index, range(len(index)), strict=True))
        return np.fromiter(map(index.__getitem__, values), np.intp, n), uniq

    def _fetch(self, cols: dict[str, list[Any]], n: int) -> dict[str, _Fetched]:
        """Per view: (row -> unique index, a (unique entities, columns) grid of stored bytes, nulls).

        The null mask of the grid is None where the store does not tell (Redis: decoding finds them).
        """
        uniques = {}
        for views in self._groups:  # views of the same entities share their unique keys
            unique = self._unique(views[0], cols, n)
            for view in views:
                uniques[view.name] = unique
        if self._redis is not None:
            return self._fetch_redis(uniques)
        return self._fetch_sqlite(uniques)

    @staticmethod
    def _assemble(decoded: tuple[Any, np.ndarray | None], inv: np.ndarray | None, n: int, kind: str) -> Any:
        """Unique entities' values -> one value per row, with Feast ``to_df`` dtypes."""
        values, null = decoded
        if null is None:  # Python values, None for null
            if kind == "generic":  # left to pandas' inference, as Feast's to_df does
                return values if inv is None else [values[i] for i in inv]
            arr = _objects(values, kind in _LISTS or kind == "string_list")
            return arr if inv is None else arr[inv]
        if inv is not None:
            values = values[inv]
            null = null[inv]
        has_null = bool(null.any())
        if values.ndim == 2 or values.dtype == object:  # arrays: one object each
            if values.ndim == 2:
                arr = np.empty(n, object)
                for i in range(n):
                    arr[i] = values[i]
            else:
                arr = values.copy() if inv is None else values
            if has_null:
                arr[null] = None
            return arr
        if not has_null:
            return values.astype(np.float64) if values.dtype.kind == "f" else np.ascontiguousarray(values)
        if kind == "bool":
            arr = values.astype(object)
            arr[null] = None
            return arr
        arr = values.astype(np.float64)
        arr[null] = np.nan
        return arr

    def change_token(self) -> tuple | None:
        """A value that changes whenever the store's contents may have: equal tokens mean
        unchanged data. SQLite: the file's identity and ``PRAGMA data_version`` (it moves
        when another connection, e.g. ``shoprank materialize``, commits). Redis: None
        (no cheap signal: callers re-read)."""
        if self._redis is not None or self._conn is None:
            return None
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        with self._lock:
            if (st.st_dev, st.st_ino) != self._inode:
                return None  # replaced: the next read reopens it
            (version,) = self._conn.execute("PRAGMA data_version").fetchone()
        return (st.st_dev, st.st_ino, version)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._redis is not None:
                self._redis.close()
                self._redis = None

    def __enter__(self) -> OnlineReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def to_frame(columns: dict[str, Any]) -> pd.DataFrame:
    """A ``{column: array}`` dict from :meth:`OnlineReader.read_columns` as a DataFrame."""
    return pd.DataFrame(columns, copy=False)
