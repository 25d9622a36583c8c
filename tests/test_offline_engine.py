"""``features.offline_engine``: the DuckDB point-in-time joins give Feast's file store's answer.

The tiny profile's training set and evaluation's candidate features, joined by both
engines on the same feature tables, compared row for row and column for column. The
impressions are edited first so that the join's edge cases are surely there: rows stamped
exactly at a feature row's stamp (ties: the row counts as already there) and rows older
than every feature row of their key (nulls).
"""

from __future__ import annotations

import shutil
from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoprank.config import Features
from shoprank.features import build_features, open_store, training_set
from shoprank.features.duck import positions
from shoprank.features.pit import ViewJoin, historical_features
from shoprank.features.store import FeatureRepoError, copy_repo, ensure_applied
from shoprank.inputs.frame import VECTOR_COLUMNS
from tests.feature_helpers import REPO, SERVICE, same, text_length_embed

EDGE_ROWS = 40  # impressions moved onto a feature row's stamp, and as many before any row


def _edge_batch(batch, tables, out):
    """A copy of ``batch`` whose impressions include ties and rows before every feature row."""
    shutil.copytree(batch, out)
    imp = pd.read_parquet(out / "impressions.parquet")
    rng = np.random.default_rng(0)
    history = pd.read_parquet(tables / "user_history.parquet", columns=["user_id", "event_timestamp"])
    stats = pd.read_parquet(tables / "item_stats.parquet", columns=["item_id", "event_timestamp"])
    pick = rng.choice(len(imp), 3 * EDGE_ROWS, replace=False)
    tie_user, tie_item, early = np.split(pick, 3)
    for rows, feats, key in ((tie_user, history, "user_id"), (tie_item, stats, "item_id")):
        for i in rows:  # the impression's own key, stamped exactly at one of its feature rows
            stamps = feats.loc[feats[key] == imp.at[i, key], "event_timestamp"]
            if len(stamps):
                imp.at[i, "ts"] = stamps.iloc[rng.integers(len(stamps))]
    first = min(history["event_timestamp"].min(), stats["event_timestamp"].min())
    imp.loc[early, "ts"] = first - pd.Timedelta(hours=1)
    imp.to_parquet(out / "impressions.parquet", index=False)
    return out


@pytest.fixture(scope="module")
def joined(tiny_batch, params, tmp_path_factory):
    """The tiny feature tables and the training set of the edited batch, by each engine."""
    root = tmp_path_factory.mktemp("offline_engine")
    tables = root / "data" / "features"
    settings = params.features.model_copy(update={"repo": copy_repo(REPO, root)})
    build_features(tiny_batch, tables, settings, text_length_embed)
    batch = _edge_batch(tiny_batch, tables, root / "batch")
    sets = {}
    for engine in ("feast", "duckdb"):
        s = settings.model_copy(update={"offline_engine": engine})
        out = training_set(s, batch, tables, root / f"train_{engine}.parquet", SERVICE)
        assert out["engine"] == engine
        sets[engine] = pq.read_table(out["path"])
    return {"root": root, "settings": settings, "tables": tables, "batch": batch, **sets}


def _same_column(name: str, a: pa.ChunkedArray, b: pa.ChunkedArray) -> None:
    assert a.type == b.type, name
    assert a.is_null().equals(b.is_null()), f"{name}: nulls differ"
    if pa.types.is_floating(a.type):
        x, y = a.to_numpy(zero_copy_only=False), b.to_numpy(zero_copy_only=False)
        assert np.allclose(x, y, rtol=1e-6, equal_nan=True), name
    elif pa.types.is_list(a.type) and pa.types.is_floating(a.type.value_type):
        for i, (x, y) in enumerate(zip(a.to_pylist(), b.to_pylist(), strict=True)):
            assert (x is None and y is None) or np.allclose(x, y, rtol=1e-6), f"{name}, row {i}"
    else:
        assert a.equals(b), name


def test_duckdb_training_set_equals_feast(joined):
    feast, duck = joined["feast"], joined["duckdb"]
    assert feast.schema.equals(duck.schema)  # same columns, same order, same types
    impressions = pq.read_metadata(joined["batch"] / "impressions.parquet").num_rows
    assert feast.num_rows == duck.num_rows == impressions
    for name in feast.column_names:
        _same_column(name, feast.column(name), duck.column(name))
    # the edge cases are in the compared rows: nulls (no earlier row) and ties (row at the same stamp)
    df = duck.to_pandas()
    assert df["user_history_version"].isna().sum() >= EDGE_ROWS
    assert df["item_age_days"].isna().sum() >= EDGE_ROWS
    stamp_us = (df["event_timestamp"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(microseconds=1)
    ties = (df["user_history_version"] == stamp_us).sum()
    assert ties >= EDGE_ROWS // 2, ties


def _candidate_rows(joined, n=600):
    """Entity rows like evaluation's: every request's user and query with items of other requests."""
    imp = pd.read_parquet(joined["batch"] / "impressions.parquet")
    from shoprank.features.queries import query_ids

    rows = imp.sample(n, random_state=2).reset_index(drop=True)
    rows["item_id"] = imp["item_id"].sample(n, random_state=3).to_numpy()
    rows["query_id"] = query_ids(rows["query"].fillna(""))
    rows = rows.rename(columns={"ts": "event_timestamp"})
    return rows[["user_id", "item_id", "query_id", "event_timestamp"]]


def test_duckdb_candidate_features_equal_feast(joined):
    store = open_store(joined["settings"])
    rows = _candidate_rows(joined)
    got = {
        e: historical_features(store, rows, SERVICE, positions=VECTOR_COLUMNS, engine=e)
        for e in ("feast", "duckdb")
    }
    (fa, fk), (da, dk) = got["feast"], got["duckdb"]
    assert list(fa.columns) == list(da.columns) and len(fa) == len(da) == len(rows)
    assert dict(fa.dtypes) == dict(da.dtypes)
    for col in fa.columns:
        if fa[col].dtype != object:  # numbers, pandas strings, timestamps: nulls in the same rows
            pd.testing.assert_series_equal(fa[col], da[col], check_exact=False, rtol=1e-6)
            continue
        for i, (a, b) in enumerate(zip(fa[col], da[col], strict=True)):  # arrays and Arrow strings
            assert same(a, b), f"{col}, row {i}: feast {a!r} != duckdb {b!r}"
    assert fa.isna().any().sum() >= 5  # rows without an earlier feature row, in several views
    assert set(fk) == set(dk) == set(VECTOR_COLUMNS)
    for name in VECTOR_COLUMNS:
        (fpos, fcol), (dpos, dcol) = fk[name], dk[name]
        assert np.array_equal(fpos, dpos), name
        assert (dpos >= 0).any() and fcol.equals(dcol), name


def test_missing_duckdb_names_the_setting(joined, monkeypatch):
    monkeypatch.setitem(__import__("sys").modules, "duckdb", None)  # import duckdb -> ImportError
    rows = _candidate_rows(joined, 5)
    with pytest.raises(FeatureRepoError, match="features.offline_engine"):
        historical_features(open_store(joined["settings"]), rows, SERVICE, engine="duckdb")


def test_missing_table_and_unknown_engine_are_clear_errors(joined, tmp_path):
    repo = copy_repo(REPO, tmp_path)
    shutil.copytree(joined["tables"], tmp_path / "data" / "features")
    (tmp_path / "data" / "features" / "user_history.parquet").unlink()
    store = open_store(joined["settings"].model_copy(update={"repo": repo}))
    ensure_applied(store, repo)
    with pytest.raises(FeatureRepoError, match=r"user_history\.parquet does not exist"):
        historical_features(store, _candidate_rows(joined, 5), SERVICE, engine="duckdb")
    with pytest.raises(ValueError, match="offline_engine"):
        Features(offline_engine="spark")


def test_a_failed_join_leaves_no_training_set(joined, monkeypatch):
    out = joined["root"] / "failed" / "train.parquet"
    calls = []

    def fail_on_second_chunk(self, pos, names=None):
        calls.append(1)
        if len(calls) > 7:  # after the first chunk was written
            raise OSError("disk full")
        return take(self, pos, names)

    take = ViewJoin.take
    monkeypatch.setattr(ViewJoin, "take", fail_on_second_chunk)
    with pytest.raises(OSError, match="disk full"):
        training_set(joined["settings"], joined["batch"], joined["tables"], out, SERVICE, chunk_rows=500)
    assert list(out.parent.iterdir()) == []  # neither the file nor its temporary


def test_ttl_created_stamp_and_ties_on_a_hand_made_view(tmp_path):
    """Semantics Feast's store applies that shoprank's own views do not use (TTL, created stamps)."""
    t = lambda h: pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(hours=h)  # noqa: E731
    feats = pd.DataFrame(
        {
            "item_id": ["A", "A", "A", "A", "B"],
            "event_timestamp": [t(0), t(5), t(5), t(5), t(1)],
            "created": [t(0), t(7), t(9), t(6), pd.NaT],
            "price": [1.0, 2.0, 3.0, 4.0, 5.0],
        }
    )
    feats.to_parquet(tmp_path / "v.parquet", index=False)
    view = ViewJoin("v", ["item_id"], {"price": pa.float32()}, tmp_path / "v.parquet", created="created")
    rows = pd.DataFrame(
        {
            "item_id": ["A", "A", "A", "B", "B", "", "C"],
            "event_timestamp": [t(-1), t(4), t(5), t(1), t(30), t(9), t(9)],
        }
    )
    # before any row; the 0h row; at 5h the latest created of three equal stamps; tie; old; empty; unknown
    assert positions(view, rows).tolist() == [-1, 0, 2, 4, 4, -1, -1]
    view.ttl = timedelta(hours=24)
    assert positions(view, rows).tolist() == [-1, 0, 2, 4, -1, -1, -1]  # B's row is 29 h old at 30h
    view.created, view.ttl = None, None
    assert positions(view, rows)[2] == 3  # without a created stamp: the last in file order
