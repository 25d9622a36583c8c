"""The fast online reader (shoprank.features.online) against Feast's own read path.

Feast runs for real: a tiny batch's features are materialised into a private copy of the
repo (SQLite; Redis in the integration test), then OnlineReader and Feast's
get_online_features read the same keys and must agree cell by cell and dtype by dtype.
"""

from __future__ import annotations

import shutil
import sqlite3
import zlib

import numpy as np
import pandas as pd
import pytest
from bench.bench_features import redis_server as throwaway_redis

from shoprank.data.io import write_tables
from shoprank.features import OnlineReader, build_features, materialize, online_features, open_store, query_id
from shoprank.features.online import OnlineStoreMissing, _Column, _Decoder
from shoprank.features.store import copy_repo
from tests.conftest import missing_server
from tests.feature_helpers import REPO, SERVICE, _hand_batch, same, text_length_embed

DIM = 384


def text_embed(texts: list[str]) -> np.ndarray:
    """A 384-dim stand-in encoder whose vector depends on the text only."""
    return np.stack(
        [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(DIM, dtype=np.float32) for t in texts]
    ).reshape(len(texts), DIM)


def _materialised(settings, batch, root):
    tables = root / "data" / "features"
    build_features(batch, tables, settings, text_embed)
    return materialize(settings, tables)


@pytest.fixture(scope="module")
def tiny_online(tiny_batch, params, tmp_path_factory):
    """The tiny batch's features in SQLite, and entity rows that mix known and unknown keys."""
    root = tmp_path_factory.mktemp("tiny_online")
    settings = params.features.model_copy(update={"repo": copy_repo(REPO, root)})
    _materialised(settings, tiny_batch, root)
    imp = pd.read_parquet(tiny_batch / "impressions.parquet", columns=["user_id", "query", "item_id"])
    search = imp[imp["query"] != ""].iloc[0]
    user, query = str(search["user_id"]), query_id(str(search["query"]))
    items = imp["item_id"].drop_duplicates().astype(str).tolist()[:60]
    rows = [{"user_id": user, "query_id": query, "item_id": i} for i in items]
    rows += [
        {"user_id": user, "query_id": query, "item_id": items[3]},  # a repeated item
        {"user_id": "nobody", "query_id": "", "item_id": "no-such-item"},  # nothing known
        {"user_id": "nobody", "query_id": query, "item_id": items[0]},  # unknown user, known item
    ]
    return {"root": root, "settings": settings, "rows": rows, "batch": tiny_batch}


def assert_same_frame(fast: pd.DataFrame, feast: pd.DataFrame) -> int:
    """Same columns (Feast's order is a set's: compared by name), rows, dtypes and values."""
    assert set(fast.columns) == set(feast.columns) and len(fast) == len(feast)
    keys = [c for c in feast.columns if c in ("user_id", "query_id", "item_id")]
    assert list(fast.columns[: len(keys)]) == keys  # the join keys first, in the order given
    cells = 0
    for col in feast.columns:
        assert fast[col].dtype == feast[col].dtype, f"{col}: {fast[col].dtype} != {feast[col].dtype}"
        for i, (a, b) in enumerate(zip(fast[col], feast[col], strict=True)):
            assert same(a, b), f"{col}[{i}]: fast {a!r} != feast {b!r}"
            cells += 1
    return cells


def test_reader_equals_feast_on_sqlite(tiny_online):
    settings, rows = tiny_online["settings"], tiny_online["rows"]
    feast = online_features(open_store(settings), SERVICE, rows)
    with OnlineReader(settings, SERVICE) as reader:
        fast = reader.read(rows)
        assert assert_same_frame(fast, feast) > 40 * len(rows)
        # the embeddings are real 384-float arrays and the lists real lists
        assert (
            fast["item_embedding"].iloc[0].dtype == np.float32 and len(fast["item_embedding"].iloc[0]) == DIM
        )
        assert len(fast["query_embedding"].iloc[0]) == DIM and isinstance(fast["recent_items"].iloc[0], list)
        assert len(fast["recent_items"].iloc[0]) > 0
        # the columnar form of the same request gives the same frame; one row reads like many
        columnar = {k: [r[k] for r in rows] for k in ("item_id", "user_id", "query_id")}
        by_columns = reader.read(columnar)
        assert list(by_columns.columns[:3]) == ["item_id", "user_id", "query_id"]
        assert_same_frame(
            by_columns, online_features(open_store(settings), SERVICE, rows)[by_columns.columns]
        )
        assert_same_frame(reader.read(rows[:1]), online_features(open_store(settings), SERVICE, rows[:1]))


def test_reader_connection_is_read_only_with_a_page_cache_for_a_whole_request(tiny_online):
    from shoprank.features.online import PAGE_CACHE_MIB

    with OnlineReader(tiny_online["settings"], SERVICE) as reader:
        conn = reader._conn
        assert conn.execute("PRAGMA cache_size").fetchone()[0] == -PAGE_CACHE_MIB * 1024
        with pytest.raises(sqlite3.OperationalError, match="readonly"):
            conn.execute("CREATE TABLE t (x)")


def test_text_free_service_and_column_order(tiny_online):
    settings, rows = tiny_online["settings"], tiny_online["rows"][:5]
    with OnlineReader(settings, "text_free_v1") as reader:
        fast = reader.read(rows)
        assert "item_embedding" not in fast and "query_embedding" not in fast
        assert "query_id" not in reader.join_keys  # not needed, but returned like Feast: an entity's key
        assert list(fast.columns) == ["user_id", "query_id", "item_id", *reader.columns]
        assert_same_frame(fast, online_features(open_store(settings), "text_free_v1", rows))


def test_missing_keys_read_as_null(tiny_online):
    settings = tiny_online["settings"]
    rows = [{"item_id": "nope", "user_id": "nobody", "query_id": ""}]
    with OnlineReader(settings) as reader:
        fast = reader.read(rows)
        feast = online_features(open_store(settings), SERVICE, rows)
        assert_same_frame(fast, feast)  # Feast's dtypes too: a column null in every row is object None
        features = fast[reader.columns]
        assert features.isna().all().all()
        known = tiny_online["rows"][0]
        mixed = reader.read([known, rows[0]])
        assert mixed["price"].notna().tolist() == [True, False]
        assert mixed["item_embedding"].iloc[1] is None and mixed["recent_items"].iloc[1] is None
        assert mixed["item_impressions_7d"].dtype == np.float64  # int feature with a null: float + NaN
        assert reader.read([known])["item_impressions_7d"].dtype == np.int64


def _store_copy(tiny_online, tmp_path):
    """Settings of a copy of the tiny store (repo, registry and SQLite file), free to alter."""
    shutil.copytree(tiny_online["root"] / "features", tmp_path / "features")
    settings = tiny_online["settings"].model_copy(update={"repo": tmp_path / "features"})
    return settings, tmp_path / "features" / "data" / "online_store.db"


def test_stale_features_and_empty_values_read_like_feast(tiny_online, tmp_path):
    """Rows of a feature the view no longer has are ignored, an empty value reads as null."""
    settings, db = _store_copy(tiny_online, tmp_path)
    rows = tiny_online["rows"]
    with OnlineReader(settings) as reader:
        view = next(v for v in reader.views if v.name == "item_profile")
        key = reader._keys(view, [(rows[1]["item_id"],)])[0]
        other = reader._keys(view, [(rows[2]["item_id"],)])[0]
        table = view.table
        with sqlite3.connect(db) as conn:  # as if "old_price" had been dropped from the view
            conn.execute(
                f'INSERT INTO "{table}" (entity_key, feature_name, value, event_ts, created_ts) '
                f"SELECT entity_key, 'old_price', value, event_ts, created_ts FROM \"{table}\" "
                "WHERE feature_name = 'price'"
            )
            empty = f'UPDATE "{table}" SET value = ? WHERE entity_key = ? AND feature_name = ?'
            for feature in ("price", "brand", "n_features"):
                conn.execute(empty, (b"", key, feature))
            conn.execute(f'DELETE FROM "{table}" WHERE entity_key = ? AND feature_name = ?', (other, "brand"))
        fast = reader.read(rows)
        assert_same_frame(fast, online_features(open_store(settings), SERVICE, rows))
        assert np.isnan(fast["price"].iloc[1]) and fast["brand"].iloc[1] is None
        assert fast["brand"].iloc[2] is None
        assert fast["n_features"].dtype == np.float64 and np.isnan(fast["n_features"].iloc[1])
        assert not np.isnan(fast["price"].iloc[2])


def test_large_requests_are_read_in_chunks_and_sizes_share_statements(tiny_online, monkeypatch):
    import shoprank.features.online.sqlite as online_sql

    settings, rows = tiny_online["settings"], tiny_online["rows"]
    feast = online_features(open_store(settings), SERVICE, rows)
    with OnlineReader(settings) as reader:
        monkeypatch.setattr(online_sql, "CHUNK", 7)  # several statements, a batch spanning views of two keys
        assert_same_frame(reader.read(rows), feast)
        monkeypatch.undo()
        for size in range(1, len(rows) + 1):  # every size: the same values as the whole request
            part = reader.read_columns(rows[-size:])
            for c in reader.columns:
                assert all(same(a, b) for a, b in zip(part[c], feast[c].iloc[-size:], strict=True)), c
        assert len(reader._statements) <= 12  # sizes rounded up to a few statement shapes
        assert (
            online_sql._padded(1) == 1
            and online_sql._padded(65) == 96
            and online_sql._padded(4096) == online_sql.CHUNK
        )


def test_a_missing_table_is_a_clear_error(tiny_online, tmp_path):
    settings, db = _store_copy(tiny_online, tmp_path)
    reader = OnlineReader(settings)
    with sqlite3.connect(db) as conn:
        conn.execute(f'DROP TABLE "{next(v for v in reader.views if v.name == "item_stats").table}"')
    with pytest.raises(OnlineStoreMissing, match="for view item_stats"):
        reader.read(tiny_online["rows"][:2])
    reader.close()


def test_concurrent_reads_agree(tiny_online):
    from concurrent.futures import ThreadPoolExecutor

    rows = tiny_online["rows"]
    with OnlineReader(tiny_online["settings"]) as reader:
        want = reader.read(rows)
        with ThreadPoolExecutor(4) as pool:
            for got in pool.map(lambda i: reader.read(rows[i % 7 :]), range(40)):
                assert_same_frame(got, want.iloc[len(want) - len(got) :].reset_index(drop=True))


def test_reader_sees_a_new_materialisation_without_reopening(params, tmp_path):
    batch = _hand_batch(tmp_path / "batch")
    settings = params.features.model_copy(update={"repo": copy_repo(REPO, tmp_path)})
    tables = tmp_path / "data" / "features"
    build_features(batch, tables, settings, text_length_embed)
    materialize(settings, tables)
    row = [{"item_id": "A", "user_id": "U", "query_id": query_id("red shoe")}]
    reader = OnlineReader(settings)
    before = reader.read(row).iloc[0]
    assert before["price"] == 50 and list(before["item_embedding"]) == [len("red shoe. a shoe"), 4, 1]
    catalog = pd.read_parquet(batch / "catalog.parquet")
    catalog.loc[catalog["item_id"] == "A", ["price", "title"]] = [55.0, "red running shoe"]
    write_tables(batch, {"catalog": catalog})
    build_features(batch, tables, settings, text_length_embed)
    materialize(settings, tables)
    after = reader.read(row).iloc[0]  # the same reader: no cache between it and the store
    assert after["price"] == 55 and list(after["item_embedding"]) == [len("red running shoe. a shoe"), 5, 1]
    assert_same_frame(reader.read(row), online_features(open_store(settings), SERVICE, row))
    reader.close()


def test_unmaterialised_store_is_a_clear_error(tiny_online, params, tmp_path):
    settings = params.features.model_copy(update={"repo": copy_repo(REPO, tmp_path / "fresh")})
    with pytest.raises(OnlineStoreMissing, match="shoprank materialize"):
        OnlineReader(settings)  # nothing applied: the registry has no such service
    # a materialised store whose database then disappears: the next read says so
    root = tmp_path / "gone"
    shutil.copytree(tiny_online["root"] / "data", root / "data")
    gone = params.features.model_copy(update={"repo": copy_repo(REPO, root)})
    materialize(gone, root / "data" / "features")
    reader = OnlineReader(gone)
    assert len(reader.read(tiny_online["rows"][:2])) == 2
    db = root / "features" / "data" / "online_store.db"
    db.unlink()
    with pytest.raises(OnlineStoreMissing, match="shoprank materialize"):
        reader.read(tiny_online["rows"][:2])
    with pytest.raises(OnlineStoreMissing, match="no SQLite online store"):
        OnlineReader(gone)
    with pytest.raises(ValueError, match="join keys"):
        OnlineReader(tiny_online["settings"]).read([{"item_id": "x"}])


def test_entity_keys_are_serialised_like_feast(tiny_online):
    reader = OnlineReader(tiny_online["settings"])
    for view in reader.views:
        values = [("a",), ("",), ("é ü 漢字",), ("x" * 300,)]
        assert reader._fast_keys(view, values) == reader._feast_keys(view, values)


def test_decoder_matches_feast_conversion_for_every_fast_path():
    from feast.protos.feast.types.Value_pb2 import DoubleList, FloatList, Int64List, StringList, Value
    from feast.type_map import feast_value_type_to_python_type

    cases = {
        "int64": [Value(int64_val=v) for v in (0, 1, 127, 128, 300, -1, -(2**63), 2**63 - 1)],
        "int32": [Value(int32_val=v) for v in (0, 5, -1, -(2**31), 2**31 - 1)],
        "bool": [Value(bool_val=v) for v in (True, False, True)],
        "float32": [Value(float_val=v) for v in (0.0, -1.5, 3.25e10, float("inf"))],
        "float64": [Value(double_val=v) for v in (0.0, -1.5, 1e30)],
        "string": [Value(string_val=v) for v in ("", "a", "é" * 100, "x" * 500)],
        "float32_list": [Value(float_list_val=FloatList(val=[1.5, -2.0, 3.0])) for _ in range(3)],
        "float64_list": [Value(double_list_val=DoubleList(val=[1.5, 2.25])) for _ in range(2)],
        "float32_list ragged": [Value(float_list_val=FloatList(val=v)) for v in ([1.0], [], [2.0, 3.0])],
        "string_list": [Value(string_list_val=StringList(val=v)) for v in (["a", "b"], [])],
        "int64_list": [Value(int64_list_val=Int64List(val=v)) for v in ([1, -2], [3])],
        "float32 as int64": [Value(int64_val=3), Value(float_val=1.5)],  # odd bytes: the exact path
    }
    decoder = _Decoder()
    for label, protos in cases.items():
        kind = label.split()[0] if label != "float32 as int64" else "float32"
        for with_null in (False, True):
            blobs = [p.SerializeToString() for p in protos] + ([b"", None] if with_null else [])
            column = np.empty(len(blobs), object)
            column[:] = blobs
            want = [feast_value_type_to_python_type(p) for p in protos] + ([None, None] if with_null else [])
            values, null = decoder.decode(column, _Column(label, label, kind, None))
            got = values if null is None else [None if m else v for v, m in zip(values, null, strict=True)]
            assert len(got) == len(want), label
            for a, b in zip(got, want, strict=True):
                assert same(a, b) and (a is None) == (b is None), f"{label}: {a!r} != {b!r}"


def test_decoder_vectorised_paths_equal_feast_exactly(monkeypatch):
    """Many values (numpy paths, not the loop for a few), of one length and mixed, exactly as Feast's."""
    from feast.protos.feast.types.Value_pb2 import Value
    from feast.type_map import feast_value_type_to_python_type

    import shoprank.features.online.decode as online_decode

    stamps = [1_700_000_000_000_000 + 977 * i for i in range(40)]  # microseconds: 8-byte varints
    mixed = [0, 1, 127, 128, 300, 2**40, -1, -(2**63), 2**63 - 1, 5] * 4
    cases = {
        "int64 one length": [Value(int64_val=v) for v in stamps],
        "int64 one byte": [Value(int64_val=v % 128) for v in range(40)],
        "int64 mixed": [Value(int64_val=v) for v in mixed],
        "int32 mixed": [Value(int32_val=v) for v in (0, 1, -1, 2**31 - 1, -(2**31), 300) * 5],
        "bool": [Value(bool_val=i % 3 == 0) for i in range(30)],
        "int64 with an int32": [Value(int64_val=v) for v in stamps[:20]] + [Value(int32_val=4)],
        "string many": [Value(string_val=f"s{i % 25}-é") for i in range(60)],
    }
    monkeypatch.setattr(online_decode, "STRING_MEMO", 10)  # the memo is emptied on the way
    decoder = _Decoder()
    for label, protos in cases.items():
        assert len(protos) > online_decode._FEW
        blobs = np.empty(len(protos) + 1, object)
        blobs[:] = [p.SerializeToString() for p in protos] + [None]
        want = [feast_value_type_to_python_type(p) for p in protos] + [None]
        for _ in range(2):  # the second time strings come from the memo
            values, null = decoder.decode(blobs, _Column(label, label, label.split()[0], None))
            got = values if null is None else [None if m else v for v, m in zip(values, null, strict=True)]
            assert [type(v) if v is None or isinstance(v, str) else int(v) for v in got] == [
                type(v) if v is None or isinstance(v, str) else int(v) for v in want
            ], label
            assert [v for v in got if isinstance(v, str)] == [v for v in want if isinstance(v, str)], label


@pytest.mark.integration
def test_reader_equals_feast_on_redis(tiny_online, tmp_path):
    with throwaway_redis() as url:
        if url is None:
            missing_server("redis-server is not installed")
        root = tiny_online["root"]
        shutil.copytree(root / "data", tmp_path / "data")
        settings = tiny_online["settings"].model_copy(
            update={"repo": copy_repo(REPO, tmp_path), "online_store": "redis", "redis_url": url}
        )
        materialize(settings, tmp_path / "data" / "features")
        rows = tiny_online["rows"]
        with OnlineReader(settings) as reader:
            assert reader.store_type == "redis"
            fast = reader.read(rows)
            assert_same_frame(fast, online_features(open_store(settings), SERVICE, rows))
            assert_same_frame(
                reader.read(rows[-2:-1]), online_features(open_store(settings), SERVICE, rows[-2:-1])
            )
            # and it agrees with the SQLite store loaded from the same tables
            with OnlineReader(tiny_online["settings"]) as sqlite_reader:
                assert_same_frame(fast, sqlite_reader.read(rows))
