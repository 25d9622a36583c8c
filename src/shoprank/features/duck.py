"""Point-in-time joins on DuckDB, over the same Parquet tables Feast's file offline store reads.

``features.offline_engine: duckdb`` (params.yaml) joins the training set and evaluation's
candidate features here instead of through Feast's file (Dask) store. The answer is
Feast's (``get_historical_features``, pit.py), row for row:

- each entity row (keys, time) gets the view's latest row stamped at or before its time
  (timestamps without a zone are UTC, as Feast reads them);
- a view's ``ttl`` (when not zero) also drops rows older than the entity's time minus it;
- rows of one key with the same stamp: the newest ``created_timestamp_column`` wins when
  the source has one (null created stamps lose), then the last row in file order;
- no row (every row of the key is newer, or older than the TTL, or the key is empty: a
  feed has no query) reads as null.

DuckDB's ASOF join does the matching and returns, per entity row, the number of the
chosen row in the view's table; the features are then taken from the table's columns
(Arrow) by that number, so array features are never copied per row into Python objects.
Unlike Feast's file store, the cost of a call is a sort of the keys and stamps, not a
persisted copy of the whole table.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.features.store import FeatureRepoError

ENGINES = ("duckdb", "feast")
SETTING = "features.offline_engine"


class View(Protocol):
    """What a join needs of a feature view (pit.ViewJoin): its table, keys and time columns."""

    name: str
    keys: list[str]
    path: Path
    timestamp: str
    created: str | None
    ttl: timedelta | None


def connect() -> Any:
    """A private in-memory DuckDB connection; a clear error when DuckDB is not installed."""
    try:
        import duckdb
    except ImportError as exc:  # pragma: no cover - exercised with the module hidden
        raise FeatureRepoError(
            f"{SETTING} is duckdb, but the duckdb package is not installed: run `make setup` "
            f"(it is in requirements.lock), or set {SETTING}: feast in params.yaml"
        ) from exc
    con = duckdb.connect(":memory:")
    # Arrow tables registered with DuckDB carry no row count, so its planner takes them for a
    # few rows and would answer the ASOF join with a nested loop over every pair of rows of a key
    con.execute("SET asof_loop_join_threshold = 0")
    return con


def _epoch_ns(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """Timestamps as int64 nanoseconds since the epoch, UTC (a zone-less stamp is UTC)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not pa.types.is_timestamp(column.type):
        raise FeatureRepoError(f"timestamp column of type {column.type}: expected a timestamp")
    return column.cast(pa.timestamp("ns", tz=column.type.tz)).view(pa.int64())


def _entity_ns(stamps: pd.Series) -> pa.Array:
    stamps = pd.to_datetime(stamps, utc=True)
    return _epoch_ns(pa.array(stamps, type=pa.timestamp("ns", tz="UTC")))


def view_index(view: View) -> pa.Table:
    """The view's keys, stamps and row numbers: the side of the join DuckDB sorts."""
    path = Path(view.path)
    if not path.is_file():
        raise FeatureRepoError(
            f"view {view.name}: {path} does not exist ({SETTING} reads the Parquet tables "
            "`shoprank features` writes; run it first)"
        )
    stamps = [view.timestamp, *([view.created] if view.created else [])]
    table = pq.read_table(path, columns=[*view.keys, *stamps])
    cols = {f"k{i}": table.column(k).cast(pa.string()) for i, k in enumerate(view.keys)}
    cols["ts"] = _epoch_ns(table.column(view.timestamp))
    no_created = pa.nulls(len(table), pa.int64())
    cols["created"] = _epoch_ns(table.column(view.created)) if view.created else no_created
    cols["row"] = pa.array(np.arange(len(table), dtype=np.int64))
    return pa.table(cols)


def _ttl_ns(ttl: timedelta | None) -> int | None:
    if ttl is None or ttl.total_seconds() == 0:
        return None
    return int(ttl / timedelta(microseconds=1)) * 1000


def positions(view: View, rows: pd.DataFrame, con: Any = None) -> np.ndarray:
    """The row of the view's table that each of ``rows`` (keys + ``event_timestamp``) gets; -1: none."""
    con = con if con is not None else connect()
    n = len(rows)
    keep = np.ones(n, dtype=bool)
    ent: dict[str, pa.Array] = {}
    for i, k in enumerate(view.keys):
        key = rows[k].astype("string")
        keep &= (key.notna() & (key != "")).to_numpy(dtype=bool)  # a feed has no query: no row
        ent[f"k{i}"] = pa.array(key, type=pa.string(), from_pandas=True)
    ent["ts"] = _entity_ns(rows["event_timestamp"])
    ent["rid"] = pa.array(np.arange(n, dtype=np.int64))
    entity = pa.table(ent).filter(pa.array(keep))
    index = view_index(view)
    on = " AND ".join(f"e.k{i} = f.k{i}" for i in range(len(view.keys)))
    keys = ", ".join(f"k{i}" for i in range(len(view.keys)))
    ttl = _ttl_ns(view.ttl)
    since = f" AND f.ts >= e.ts - {ttl}" if ttl is not None else ""
    con.register("entity_rows", entity)
    con.register("view_rows", index)
    try:
        # one row per (keys, stamp) first: ASOF picks an arbitrary one among equal stamps
        got = con.execute(
            f"""
            WITH f AS (
                SELECT {keys}, ts,
                       arg_max(row, [coalesce(created, -9223372036854775808), row]) AS row
                FROM view_rows GROUP BY {keys}, ts
            )
            SELECT e.rid, f.row FROM entity_rows e ASOF JOIN f ON {on} AND e.ts >= f.ts
            WHERE TRUE{since}
            """
        ).to_arrow_table()
    finally:
        con.unregister("entity_rows")
        con.unregister("view_rows")
    out = np.full(n, -1, dtype=np.int64)
    rid = got.column("rid").to_numpy()
    out[rid] = got.column("row").to_numpy()
    return out


def join_partition(rows: pd.DataFrame, views: list[View]) -> dict[str, np.ndarray]:
    """One partition of entity rows joined to every view: ``{view: positions}`` (see :func:`positions`).

    The unit ``compute.engine`` distributes: a partition's answer does not depend on the
    others (each row gets its own latest feature row), so joining partitions apart and
    concatenating their positions gives the whole join's answer.
    """
    con = connect()
    try:
        return {view.name: positions(view, rows, con) for view in views}
    finally:
        con.close()
