"""Point-in-time joins, one feature view at a time, on the engine ``features.offline_engine`` names.

Each (keys, time) row gets, from a view, the latest row stamped at or before that time
(Feast's ``get_historical_features``). ``duckdb`` computes the same answer with DuckDB
over the same Parquet tables (duck.py); ``feast`` calls Feast's file (Dask) offline
store, and two of its behaviours (Feast 0.67) shape how it is called:

- it collapses entity rows that share one view's key and timestamp
  (feast-dev/feast#6787): the 20 items of a response share the user and the time. So
  each view is joined on its own keys, for the distinct (keys, time) pairs only, and
  the result is looked up back per row;
- every call persists the whole source table, pickling object columns (arrays) several
  times: seconds a call for a large user_history, whatever the number of rows asked
  for. So a view that declares ``<view>_version`` (the views with arrays) is
  joined in two steps: Feast picks the row, returning only its version (a scalar), for
  many rows per call; the row's other features are then read from the same table by
  (keys, version).
"""

from __future__ import annotations

import contextlib
import io
import warnings
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.features import duck
from shoprank.features.store import source_path

if TYPE_CHECKING:  # pragma: no cover - typing only
    from feast import FeatureStore

SIMPLE_TYPES = {
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "Int64": pa.int64(),
    "Int32": pa.int32(),
    "String": pa.string(),
    "Bool": pa.bool_(),
}


def arrow_type(dtype: object) -> pa.DataType:
    """Feast field type -> Arrow type of the training table column."""
    name = str(dtype)
    if name.startswith("Array(") and name.endswith(")"):
        return pa.list_(SIMPLE_TYPES[name[6:-1]])
    return SIMPLE_TYPES[name]


@dataclass
class ViewJoin:
    """What a feature service takes from one view, and how to join it."""

    name: str
    keys: list[str]
    features: dict[str, pa.DataType]  # the service's features of this view -> Arrow type
    path: Path  # the view's Parquet table
    version: str | None = None  # "<view>_version" when the view declares it: joined in two steps
    timestamp: str = "event_timestamp"  # the source's timestamp field
    created: str | None = None  # the source's created-timestamp column (ties between equal stamps)
    ttl: timedelta | None = None  # the view's TTL; zero or None: values never expire
    _columns: dict[str, pa.ChunkedArray] = field(default_factory=dict, repr=False)
    _index: pd.MultiIndex | None = field(default=None, repr=False)

    def lookup(self, keys: pd.DataFrame, version: pd.Series) -> dict[str, pa.ChunkedArray]:
        """The features (but the version) of the rows (keys, version); null where version is null."""
        return self.take(self.positions(keys, version))

    def column(self, name: str) -> pa.ChunkedArray:
        """A feature's whole column in the view's table (the rows :meth:`positions` points at)."""
        if not self._columns:  # read once per view, not per chunk
            names = list(self.features)
            self._columns = dict(zip(names, self._read(names), strict=True))
        return self._columns[name]

    def take(self, pos: np.ndarray, names: list[str] | None = None) -> dict[str, pa.ChunkedArray]:
        """The features (``names``, or all) of the rows ``pos`` of the view's table; null where -1."""
        take = pa.array(pos, mask=pos < 0)
        return {n: self.column(n).take(take) for n in (self.features if names is None else names)}

    def string_columns(self) -> set[str]:
        """Columns the table's pandas metadata says were written as pandas ``string``."""
        meta = pq.read_schema(self.path).pandas_metadata or {}
        return {c["name"] for c in meta.get("columns", []) if c.get("numpy_type") == "string"}

    def _read(self, names: list[str]) -> list[pa.ChunkedArray]:
        table = pq.read_table(self.path, columns=names)
        return [table.column(n) for n in names]

    def _load(self) -> None:
        if self._index is None:
            assert self.version is not None
            cols = [c.to_pandas().astype(str) for c in self._read(self.keys)]
            cols.append(self.column(self.version).to_pandas())
            self._index = pd.MultiIndex.from_arrays(cols)

    def positions(self, keys: pd.DataFrame, version: pd.Series) -> np.ndarray:
        """Row of the view's table for each (keys, version); -1 where version is null."""
        assert self.version is not None
        self._load()
        assert self._index is not None
        missing = version.isna().to_numpy()
        wanted = pd.MultiIndex.from_arrays(
            [*(keys[k].astype(str) for k in self.keys), version.fillna(-1).astype(np.int64)]
        )
        pos = self._index.get_indexer(wanted)
        if ((pos < 0) & ~missing).any():
            raise RuntimeError(
                f"{self.path}: a version Feast returned is not in the table (rebuilt meanwhile?)"
            )
        return pos


def service_views(store: FeatureStore, service: str) -> list[ViewJoin]:
    """The views of ``service`` with their keys, feature types and tables."""
    out = []
    for proj in store.get_feature_service(service).feature_view_projections:
        view = store.get_feature_view(proj.name)
        version = f"{view.name}_version"
        source = view.batch_source
        out.append(
            ViewJoin(
                name=proj.name_to_use(),
                keys=list(view.join_keys),
                features={f.name: arrow_type(f.dtype) for f in proj.features},
                path=source_path(store, view),
                version=version if version in {f.name for f in view.features} else None,
                timestamp=(source.timestamp_field if source else None) or "event_timestamp",
                created=(source.created_timestamp_column if source else None) or None,
                ttl=view.ttl,
            )
        )
    return out


def feast_join(store: FeatureStore, rows: pd.DataFrame, keys: list[str], refs: list[str]) -> pd.DataFrame:
    """Feast's point-in-time join of ``refs`` (one view) for each of ``rows``, in order.

    Feast sees the distinct (keys, timestamp) pairs only. A pair with no row at or before
    its time reads as null (the Dask store returns no row at all for a key whose rows
    are all newer than the entity row, instead of nulls).
    """
    on = keys + ["event_timestamp"]
    ent = rows[on].drop_duplicates()
    ent = ent[(ent[keys] != "").all(axis=1)].astype({k: "string" for k in keys})  # feeds: no query
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
        # Dask warns that the key columns are string on one side and object on the other
        # (how it reads Parquet strings); the values compare equal either way.
        warnings.filterwarnings("ignore", "Merging dataframes with merge column data type mismatches")
        got = store.get_historical_features(entity_df=ent, features=refs).to_df()
    stamp = pd.to_datetime(got["event_timestamp"], utc=True)
    got["event_timestamp"] = stamp.astype(rows["event_timestamp"].dtype)
    index = pd.MultiIndex.from_frame(got[on].astype({k: str for k in keys}))
    if len(got) > len(ent) or index.has_duplicates:
        raise RuntimeError(f"point-in-time join returned {len(got)} rows for {len(ent)} ({refs[0]})")
    wanted = pd.MultiIndex.from_frame(rows[on].astype({k: str for k in keys}))
    names = [r.split(":", 1)[1] for r in refs]
    return got[names].set_axis(index).reindex(wanted).reset_index(drop=True)


def versions(store: FeatureStore, rows: pd.DataFrame, view: ViewJoin) -> pd.Series:
    """Step one of a two-step join: the version of the row Feast picks for each of ``rows``."""
    assert view.version is not None
    return feast_join(store, rows, view.keys, [f"{view.name}:{view.version}"])[view.version]


def join_view(
    store: FeatureStore, rows: pd.DataFrame, view: ViewJoin, version: pd.Series | None = None
) -> dict[str, pd.Series | pa.ChunkedArray]:
    """One view's features for each of ``rows`` (keys + ``event_timestamp``), by name, in order,
    through Feast.

    ``version``: the view's versions for ``rows`` if already joined (see :func:`versions`).
    """
    if view.version is None:
        got = feast_join(store, rows, view.keys, [f"{view.name}:{n}" for n in view.features])
        return {n: got[n] for n in view.features}
    if version is None:
        version = versions(store, rows, view)
    version = version.reset_index(drop=True)
    out: dict[str, pd.Series | pa.ChunkedArray] = dict(view.lookup(rows[view.keys], version))
    out[view.version] = version
    return {n: out[n] for n in view.features}


def _as_feast(values: pa.ChunkedArray, view: ViewJoin, name: str) -> pd.Series:
    """A taken column as pandas, in the dtype Feast's own join returns it.

    Feast reads a view without a version with pandas' metadata of the table, so a column
    written as pandas ``string`` comes back as ``string``; two-step views are read by Arrow.
    """
    series = values.to_pandas()
    if view.version is None and name in view.string_columns():
        return series.astype(pd.StringDtype())
    return series


def historical_features(
    store: FeatureStore,
    rows: pd.DataFrame,
    service: str,
    positions: tuple[str, ...] = (),
    engine: str = "feast",
) -> pd.DataFrame | tuple[pd.DataFrame, dict[str, tuple[np.ndarray, pa.ChunkedArray]]]:
    """``rows`` (join keys + ``event_timestamp``) with the point-in-time features of ``service``.

    One output row per input row, in order; arrays as numpy arrays (None when null).
    Features named in ``positions`` (array features of two-step views) are not copied per
    row: they come back separately as ``{name: (row of the view's table or -1, column)}``
    and the result is ``(frame, that dict)``; 400k rows x 384 floats as Python objects
    would cost gigabytes. ``engine``: ``features.offline_engine`` (duckdb or feast).
    """
    if engine not in duck.ENGINES:
        raise ValueError(f"{duck.SETTING}: {engine!r} is not one of {duck.ENGINES}")
    rows = rows.reset_index(drop=True)
    out = rows.copy()
    kept: dict[str, tuple[np.ndarray, pa.ChunkedArray]] = {}
    con = duck.connect() if engine == "duckdb" else None
    for view in service_views(store, service):
        wanted = [n for n in positions if n in view.features]
        if con is not None or (wanted and view.version is not None):
            if con is not None:
                pos = duck.positions(view, rows, con)
            else:  # Feast picks the version; the version gives the row
                pos = view.positions(rows[view.keys], versions(store, rows, view).reset_index(drop=True))
            kept.update({n: (pos, view.column(n)) for n in wanted})
            others = [n for n in view.features if n not in wanted]
            taken = view.take(pos, others)
            out = out.assign(**{n: _as_feast(v, view, n) for n, v in taken.items()})
            continue
        for name, values in join_view(store, rows, view).items():
            out[name] = values.to_pandas() if isinstance(values, pa.ChunkedArray) else values
    return (out, kept) if positions else out
