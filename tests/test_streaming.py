"""Streaming training: the split in bounded chunks gives what the whole split in memory gives.

A synthetic frame with a known click model (tests/ddp_train.py) is written to Parquet and
read back in chunks; the loaders may never hold more rows than the chunk setting.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import roc_auc_score

from shoprank.config import Train
from shoprank.inputs.frame import Frame, read_frame
from shoprank.models.baselines import LightGBMModel, tabular
from shoprank.models.preprocess import FeatureSpec, Preprocessor
from shoprank.training.chunks import FileChunks, FrameChunks
from shoprank.training.stream import StreamData
from shoprank.training.train import feature_spec, fit_neural
from shoprank.training.trees import fit_lightgbm, sample_tabular
from tests.ddp_train import PAGE, synthetic

ROWS = 12_000
CUT = int(ROWS * 0.8) // PAGE * PAGE


def write(frame: Frame, path, row_group: int = 2_500) -> None:
    table = pa.Table.from_pandas(frame.df, preserve_index=False)
    for name, vec in frame.vectors.items():
        dense = np.asarray(vec)
        table = table.append_column(name, pa.array(list(dense), type=pa.list_(pa.float32())))
    pq.write_table(table, path, row_group_size=row_group)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    frame, ids, table, _ = synthetic(ROWS)
    path = tmp_path_factory.mktemp("stream") / "training_set.parquet"
    write(frame, path)
    return path, frame, ids, table


def small_fixture() -> pd.DataFrame:
    rng = np.random.default_rng(3)
    n = 503
    x = rng.normal(5, 3, n)
    x[rng.random(n) < 0.1] = np.nan
    return pd.DataFrame(
        {
            "brand": np.asarray(["a", "b", "c", None], dtype=object)[rng.integers(4, size=n)],
            "item_id": rng.choice([f"i{k}" for k in range(40)], n),
            "price": x,
            "flat": np.full(n, 2.0),
            "empty": np.full(n, np.nan),
        }
    )


def test_streamed_preprocessor_equals_in_memory():
    df = small_fixture()
    spec = FeatureSpec(numeric=("price", "flat", "empty"), categorical=("brand", "item_id"), ids=("item_id",))
    whole = Preprocessor(spec, id_min_count=14).fit(df, ["i1"])
    pieces = [df.iloc[lo : lo + 37] for lo in range(0, len(df), 37)]
    streamed = Preprocessor(spec, id_min_count=14).fit_chunks(pieces, ["i1"])
    assert streamed.vocab == whole.vocab
    # the id floor: only ids seen 14 times or more get a code, counted over all chunks
    counts = df["item_id"].value_counts()
    assert set(streamed.vocab["item_id"]) == set(counts.index[counts >= 14])
    assert set(streamed.vocab["brand"]) == {"a", "b", "c", "<na>"}
    assert streamed.mean["price"] == pytest.approx(df["price"].mean(), rel=1e-12)
    assert streamed.std["price"] == pytest.approx(df["price"].std(), rel=1e-12)
    assert (streamed.mean["flat"], streamed.std["flat"]) == (2.0, 1.0)  # no spread: unscaled
    assert (streamed.mean["empty"], streamed.std["empty"]) == (0.0, 1.0)  # nothing seen
    assert streamed.mean == pytest.approx(whole.mean) and streamed.std == pytest.approx(whole.std)


def test_file_chunks_are_bounded_and_give_the_split(data):
    path, frame, _, _ = data
    rows = np.arange(CUT)[::3]  # a split that is not whole row groups
    chunks = FileChunks(path, rows, chunk_rows=700)
    parts = list(chunks)
    assert [len(p) for p in parts] == [700] * (len(rows) // 700) + [len(rows) % 700]
    whole = read_frame(path, rows=rows)
    got = pd.concat([p.df for p in parts], ignore_index=True)
    pd.testing.assert_frame_equal(got[whole.df.columns], whole.df)
    for name, vec in whole.vectors.items():
        np.testing.assert_array_equal(
            np.concatenate([np.asarray(p.vectors[name]) for p in parts]), np.asarray(vec)
        )
    scanned = pd.concat(list(chunks.scan(["clicked", "absent"])), ignore_index=True)
    np.testing.assert_array_equal(scanned["clicked"].to_numpy(), whole.df["clicked"].to_numpy())


def test_stream_holds_one_chunk_and_yields_every_row_once_per_epoch(data):
    path, frame, ids, _ = data
    chunks = FileChunks(path, np.arange(CUT), chunk_rows=1_000)
    spec = feature_spec(chunks.columns())
    pre = Preprocessor(spec).fit_chunks((c.df for c in chunks), ids)
    stream = StreamData(chunks, pre, 20, batch_size=128, shuffle=True, seed=1)
    seen = []
    for _ in range(2):
        labels = [b["label"] for b in stream]
        assert len(labels) == len(stream)
        seen.append(torch_cat(labels))
        assert max(len(b) for b in labels) <= 128
    assert stream.held_rows == 1_000  # never more than one chunk as tensors
    y = frame.df["clicked"].to_numpy()[:CUT]
    for labels in seen:  # every row once: the same clicks, in a shuffled order
        assert len(labels) == CUT and labels.sum() == y.sum()
    assert not np.array_equal(seen[0], seen[1])  # a fresh order each epoch
    assert not np.array_equal(seen[0], y)


def torch_cat(tensors) -> np.ndarray:
    return np.concatenate([t.numpy() for t in tensors])


def settings(**changes) -> Train:
    base = dict(
        d=16, cross_layers=1, mlp=(32,), dropout=0.0, batch_size=256, max_epochs=4, patience=4, lr=5e-3,
        warmup_steps=10, accelerator="cpu", devices=1, precision="32-true", seed=0,
    )  # fmt: skip
    return Train(**{**base, **changes})


def test_streamed_training_matches_in_memory(data):
    path, frame, ids, table = data
    train, val = frame.take(np.arange(CUT)), frame.take(np.arange(CUT, len(frame)))
    spec = feature_spec(list(frame.df.columns))
    y = val.df["clicked"].to_numpy()
    whole, info_whole = fit_neural(train, val, spec, ids, table, settings(), 20, use_text=True)
    chunk = 1_500
    streamed_train = FileChunks(path, np.arange(CUT), chunk)
    streamed_val = FileChunks(path, np.arange(CUT, len(frame)), chunk)
    streamed, info = fit_neural(
        streamed_train, streamed_val, spec, ids, table, settings(chunk_rows=chunk), 20, use_text=True
    )
    assert info_whole["held_rows"] == CUT  # in memory: the whole split at once
    assert info["held_rows"] <= chunk
    assert streamed.pre.vocab == whole.pre.vocab
    auc_whole = roc_auc_score(y, whole.predict(val, with_position=True))
    auc = roc_auc_score(y, streamed.predict(val, with_position=True))
    assert auc_whole > 0.7 and auc > 0.7  # both learned the click model (chance is 0.5)
    assert auc == pytest.approx(auc_whole, abs=0.015)


def test_lightgbm_sample_is_bounded_and_whole_when_it_fits(data):
    path, frame, ids, _ = data
    spec = feature_spec(list(frame.df.columns), "lightgbm")
    rows = np.arange(CUT)
    x_all, y_all = sample_tabular(FileChunks(path, rows, 1_000), spec, max_rows=CUT)
    expected = tabular(frame.take(rows), spec, None)
    pd.testing.assert_frame_equal(x_all, expected, check_categorical=False)
    np.testing.assert_array_equal(y_all["clicked"].to_numpy(), frame.df["clicked"].to_numpy()[:CUT])
    small, _ = sample_tabular(FileChunks(path, rows, 1_000), spec, max_rows=2_000)
    other, _ = sample_tabular(FileChunks(path, rows, 3_000), spec, max_rows=2_000)
    assert len(small) == 2_000
    pd.testing.assert_frame_equal(small, other)  # the sample does not depend on the chunk size


def test_streamed_lightgbm_matches_in_memory(data):
    path, frame, _, _ = data
    train, val = frame.take(np.arange(CUT)), frame.take(np.arange(CUT, len(frame)))
    spec = feature_spec(list(frame.df.columns), "lightgbm")
    whole = LightGBMModel(rounds=60).fit(train, val, spec)
    streamed = fit_lightgbm(
        FileChunks(path, np.arange(CUT), 1_000), FrameChunks(val, 1_000), spec, 60, 0, CUT, purchase=False
    )
    y = val.df["clicked"].to_numpy()
    np.testing.assert_allclose(streamed.predict(val), whole.predict(val), atol=1e-9)
    sampled = fit_lightgbm(
        FileChunks(path, np.arange(CUT), 1_000),
        FrameChunks(val, 1_000),
        spec,
        60,
        0,
        CUT // 2,
        purchase=False,
    )
    assert roc_auc_score(y, sampled.predict(val)) == pytest.approx(
        roc_auc_score(y, whole.predict(val)), abs=0.03
    )
