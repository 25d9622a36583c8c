"""`shoprank training-set`: impressions + Feast point-in-time join -> one Parquet training table.

Every impression is an entity row (``item_id``, ``user_id``, ``query_id``,
``event_timestamp = ts``) and gets each feature of a service from the latest row
stamped at or before it, on the engine ``features.offline_engine`` names: DuckDB over
the feature tables (duck.py), or Feast's file offline store (pit.py says how the views
are joined). Rows are written in time-ordered chunks appended to one Parquet file, so
memory is bounded by a chunk, not by the log; the file appears under its name only
when complete.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.artifacts import FEATURE_SERVICE
from shoprank.compute import bounds, map_partitions, partition_count
from shoprank.config import Compute, Features
from shoprank.config_compute import LOCAL
from shoprank.data.io import table_path
from shoprank.features import duck
from shoprank.features.pit import ViewJoin, join_view, service_views, versions
from shoprank.features.queries import query_ids
from shoprank.features.store import check_tables, ensure_applied, open_store
from shoprank.inputs.declare import request_columns, shop_columns
from shoprank.logs import log

logger = logging.getLogger(__name__)
CHUNK_ROWS = 200_000  # impressions per point-in-time join: bounds memory (embeddings are 1.5 kB a row)
VERSION_ROWS = 2_000_000  # impressions per step-one join of the two-step views (only versions come back)
LABEL_COLUMNS = [
    "request_id",
    "event_timestamp",
    "user_id",
    "item_id",
    "query",
    "query_id",
    "is_search",
    "position",
    "clicked",
    "purchased",
    "propensity",
]


def read_impressions(batch_dir: Path | str) -> pd.DataFrame:
    """The batch's impressions as entity rows: keys, ``event_timestamp``, labels, the shop's
    impression columns (null where a row lacks them: served feedback), in time order."""
    imp = pd.read_parquet(table_path(Path(batch_dir), "impressions"))
    for col, fill in (("purchased", 0), ("propensity", np.nan)):
        if col not in imp:
            imp[col] = fill
    imp = imp.rename(columns={"ts": "event_timestamp"})
    imp["query_id"] = query_ids(imp["query"])
    imp["is_search"] = (imp["query_id"] != "").astype(np.int8)
    for name, kind in shop_columns("impressions").items():
        if name not in imp:
            imp[name] = np.nan if kind == "numeric" else None
    imp = imp.sort_values(["event_timestamp", "request_id", "position"], kind="stable", ignore_index=True)
    return imp[LABEL_COLUMNS + request_columns()]


def _to_arrow(chunk: pd.DataFrame, joined: dict[str, pd.Series | pa.ChunkedArray], types: dict) -> pa.Table:
    """Labels + joined features with a fixed schema, so every chunk appends to the same file."""
    base = pa.Table.from_pandas(chunk[LABEL_COLUMNS + request_columns()], preserve_index=False)
    cols = []
    for name, t in types.items():
        v = joined[name]
        if isinstance(v, pa.ChunkedArray):
            cols.append(v.cast(t))
            continue
        if pa.types.is_list(t):  # object column of arrays (a view without a version); NaN -> null
            v = [None if x is None or (isinstance(x, float) and np.isnan(x)) else x for x in v.tolist()]
        cols.append(pa.chunked_array([pa.array(v, type=t, from_pandas=True)]))
    return pa.Table.from_arrays([*base.columns, *cols], names=[*base.column_names, *types])


def duck_positions(imp: pd.DataFrame, views: list[ViewJoin], compute: Compute) -> dict[str, np.ndarray]:
    """Every impression's row of each view: DuckDB's join of time-ordered partitions of the
    impressions (``compute.partitions``), mapped on ``compute.engine``, then concatenated."""
    keys = sorted({k for v in views for k in v.keys}) + ["event_timestamp"]
    slices = [imp.iloc[lo:hi] for lo, hi in bounds(len(imp), partition_count(compute, len(imp)))]
    # Ray ships each partition to a worker: only the join's columns; in-process, row slices are views
    parts = [s[keys] for s in slices] if compute.engine == "ray" else slices
    bare = [replace(v, _columns={}, _index=None) for v in views]  # no cached columns shipped to workers
    got = map_partitions(compute, duck.join_partition, parts, shared=(bare,), what="training-set join")
    return {v.name: np.concatenate([g[v.name] for g in got]) for v in views}


def _pickers(store, imp: pd.DataFrame, views: list[ViewJoin], engine: str, compute: Compute):
    """``pick(view, lo, hi)``: the view's features of impressions ``lo:hi``, joined by ``engine``.

    DuckDB finds every impression's row in one pass per view and partition (an int64 each);
    Feast's two-step views get their versions in big batches (its per-call cost is the
    whole table).
    """
    if engine == "duckdb":
        pos = duck_positions(imp, views, compute)
        return lambda view, lo, hi: view.take(pos[view.name][lo:hi])
    if engine != "feast":
        raise ValueError(f"{duck.SETTING}: {engine!r} is not one of {duck.ENGINES}")
    picked = {
        v.name: pd.concat(
            [versions(store, imp.iloc[lo : lo + VERSION_ROWS], v) for lo in range(0, len(imp), VERSION_ROWS)],
            ignore_index=True,
        )
        for v in views
        if v.version is not None
    }

    def pick(view: ViewJoin, lo: int, hi: int) -> dict:
        chunk = imp.iloc[lo:hi].reset_index(drop=True)
        return join_view(store, chunk, view, picked[view.name].iloc[lo:hi] if view.name in picked else None)

    return pick


def training_set(
    settings: Features,
    batch_dir: Path | str,
    features_dir: Path | str,
    out: Path | str,
    service: str = FEATURE_SERVICE,
    chunk_rows: int = CHUNK_ROWS,
    erased: frozenset[str] = frozenset(),
    compute: Compute = LOCAL,
) -> dict:
    """Write the training table of ``service`` for the impressions of ``batch_dir`` to ``out``.

    Columns: the labels and keys of each impression (LABEL_COLUMNS; ``is_search`` is 0
    for feeds, whose query features are null), then every feature of the service.
    Rows are in time order; impressions of ``erased`` shoppers (pseudonyms, ``shoprank
    forget``) are left out. ``compute``: where DuckDB's joins run (``features.offline_engine:
    feast`` joins in Feast's store, in this process).
    Returns ``{"path", "engine", "rows", "columns", "service", "seconds"}``.
    """
    start = time.perf_counter()
    store = open_store(settings)
    ensure_applied(store, settings.repo)
    check_tables(store, features_dir)
    views = service_views(store, service)
    types = {name: t for view in views for name, t in view.features.items()}
    imp = read_impressions(batch_dir)
    if erased:
        imp = imp[~imp["user_id"].astype("string").isin(erased).to_numpy(dtype=bool)].reset_index(drop=True)
    pick = _pickers(store, imp, views, settings.offline_engine, compute)
    log(
        logger,
        "training rows picked",
        engine=settings.offline_engine,
        compute=compute.engine,
        rows=len(imp),
        seconds=round(time.perf_counter() - start, 1),
    )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    writer = None
    try:
        for lo in range(0, len(imp), chunk_rows):
            chunk = imp.iloc[lo : lo + chunk_rows].reset_index(drop=True)
            joined = {}
            for view in views:
                joined.update(pick(view, lo, lo + len(chunk)))
            table = _to_arrow(chunk, joined, types)
            writer = writer or pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            log(
                logger,
                "training chunk",
                rows=lo + len(chunk),
                of=len(imp),
                seconds=round(time.perf_counter() - start, 1),
            )
        if writer is None:
            raise ValueError(f"{batch_dir}: no impressions to build a training set from")
        writer.close()
        os.replace(tmp, out)
    finally:
        if writer is not None and writer.is_open:
            writer.close()
        tmp.unlink(missing_ok=True)
    seconds = round(time.perf_counter() - start, 3)
    log(logger, "training set written", path=str(out), rows=len(imp), service=service, seconds=seconds)
    return {
        "path": str(out),
        "engine": settings.offline_engine,
        "rows": len(imp),
        "columns": LABEL_COLUMNS + request_columns() + list(types),
        "service": service,
        "seconds": seconds,
    }
