"""The training table as read for modelling: vectors deduplicated by their text keys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from shoprank.inputs import apply as DV
from shoprank.inputs import derive as DVF
from shoprank.inputs import frame as F
from shoprank.models.preprocess import TensorData
from shoprank.training import data as D
from shoprank.training.train import feature_spec


def _table(n: int = 1000) -> tuple[pa.Table, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    items = rng.integers(0, 30, n)
    version = (items % 2).astype(str)
    item_vecs = rng.normal(size=(30, 8)).astype(np.float32)
    queries = rng.integers(0, 12, n)
    query_vecs = rng.normal(size=(12, 8)).astype(np.float32)
    q_list = [None if q == 0 else list(query_vecs[q]) for q in queries]  # query 0: a feed, no text
    t = pa.table(
        {
            "item_id": [f"i{i}" for i in items],
            "item_text_version": version,
            "item_embedding": pa.array([list(item_vecs[i]) for i in items], type=pa.list_(pa.float32())),
            "query_id": [f"q{q}" for q in queries],
            "query_text_version": ["v"] * n,
            "query_embedding": pa.array(q_list, type=pa.list_(pa.float32())),
            "clicked": rng.integers(0, 2, n),
        }
    )
    dense_q = np.stack([np.zeros(8, np.float32) if q == 0 else query_vecs[q] for q in queries])
    return t, item_vecs[items], dense_q


def test_read_frame_stores_each_vector_once_and_reads_back_the_same_values(tmp_path, monkeypatch):
    monkeypatch.setattr(F, "READ_ROWS", 128)  # several batches: keys seen in an earlier batch are reused
    table, items, queries = _table()
    pq.write_table(table, tmp_path / "t.parquet", row_group_size=300)
    frame = F.read_frame(tmp_path / "t.parquet")
    item, query = frame.vectors["item_embedding"], frame.vectors["query_embedding"]
    assert item.table.shape == (31, 8)  # 30 items + the zero row
    assert query.table.shape == (12, 8)  # 11 queries with text + the zero row
    np.testing.assert_array_equal(np.asarray(item), items)
    np.testing.assert_array_equal(np.asarray(query), queries)
    assert "item_embedding" not in frame.df and len(frame.df) == 1000

    part = frame.take(np.arange(10, 50))
    np.testing.assert_array_equal(np.asarray(part.vectors["item_embedding"]), items[10:50])
    assert part.vectors["item_embedding"].table is item.table  # a split copies codes only

    rows = np.array([0, 5, 127, 128, 299, 300, 301, 640, 999])  # across batch and row-group edges
    some = F.read_frame(tmp_path / "t.parquet", rows=rows)  # read batch by batch, only these rows kept
    pd.testing.assert_frame_equal(some.df, frame.df.iloc[rows].reset_index(drop=True))
    np.testing.assert_array_equal(np.asarray(some.vectors["item_embedding"]), items[rows])
    np.testing.assert_array_equal(np.asarray(some.vectors["query_embedding"]), queries[rows])
    assert len(F.read_frame(tmp_path / "t.parquet", rows=np.array([], np.int64)).df) == 0


def test_read_split_matches_the_split_of_the_whole_table(tmp_path):
    n = 600
    rng = np.random.default_rng(1)
    req = rng.integers(0, 120, n)
    t0 = pd.Timestamp("2026-01-01", tz="UTC")
    df = pd.DataFrame(
        {
            "request_id": [f"r{r}" for r in req],
            "event_timestamp": [
                t0 + pd.Timedelta(minutes=int(r) * 7 + int(j))
                for r, j in zip(req, rng.integers(0, 3, n), strict=True)
            ],
            "query": [f"q{r % 9}" for r in req],
            "item_id": [f"i{r % 13}" for r in req],
            "clicked": rng.integers(0, 2, n),
        }
    )
    df.to_parquet(tmp_path / "s.parquet")
    split, keys = D.read_split(tmp_path / "s.parquet", 0.2, 0.2)
    expected = D.time_split(df, 0.2, 0.2)
    for part in ("train", "val", "test"):
        np.testing.assert_array_equal(split[part], expected[part])
    assert len(split["test"]) and len(split["val"]) and len(split["train"])
    assert keys["query"].tolist() == df["query"].tolist()


def test_cold_items_are_those_without_an_impression_before_the_rows_day():
    day = pd.Timestamp("2026-01-01", tz="UTC")
    keys = pd.DataFrame(
        {
            "item_id": ["a", "a", "b", "a", "b", "c"],
            "event_timestamp": [day, day + pd.Timedelta(hours=5), day, day + pd.Timedelta(days=1)]
            + [day + pd.Timedelta(days=2, hours=3), day + pd.Timedelta(days=2)],
        }
    )
    # a's second row is on its first day: nothing before that day, so still cold
    assert D.cold_items(keys).tolist() == [True, True, True, False, False, True]


def test_tensor_data_gathers_vectors_per_batch():
    vecs = F.Vectors(np.array([2, 0, 1, 2]), np.array([[0, 0], [1, 1], [2, 2]], np.float32))
    data = TensorData({"q_emb": vecs, "label": np.arange(4, dtype=np.float32)})
    batch = data[[0, 1, 3]]
    assert batch["q_emb"].tolist() == [[2, 2], [0, 0], [2, 2]]
    assert batch["label"].tolist() == [0, 1, 3]


def test_rowwise_cosine_matches_dense_and_is_nan_for_zero_rows():
    a = F.Vectors.of(np.array([[1, 0], [0, 0], [1, 1]], np.float32))
    b = np.array([[1, 0], [1, 0], [1, 0]], np.float32)
    out = F.rowwise_cosine(a, b, chunk=2)
    assert out[0] == 1.0 and np.isnan(out[1]) and abs(out[2] - 2**-0.5) < 1e-6
    pd.testing.assert_series_equal(pd.Series(out).isna(), pd.Series([False, True, False]))


def test_derive_flags_queries_that_name_the_items_attributes():
    df = pd.DataFrame(
        {
            "query": ["summitra red tent", "shredder", None, "tent in RED"],
            "brand": ["Summitra", "Other", "Summitra", None],
            "colour": ["red", "red", "red", "red"],
        }
    )
    out = DV.derive(df)
    assert out["query_brand_match"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert out["query_colour_match"].tolist() == [1.0, 0.0, 0.0, 1.0]  # whole words, any case
    assert "query_material_match" not in out


def test_derive_flags_items_over_the_price_cap_the_query_names():
    df = pd.DataFrame(
        {
            "query": ["tent under 50", "tent under 50", "boots below $120", "cheap tent", None, "x under 5"],
            "price": [49.99, 50.01, 130.0, 500.0, 500.0, np.nan],
        }
    )
    out = DV.derive(df)
    assert out["query_over_price_cap"].tolist() == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0]
    assert DVF.query_price_cap("hiking boots under 80") == 80.0
    assert np.isnan(DVF.query_price_cap("under armour boots"))  # a number must follow
    assert "query_over_price_cap" in feature_spec(list(out.columns)).numeric
