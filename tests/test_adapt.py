"""`shoprank adapt`: pairs come from the training split's clicks only, fine-tuning learns what a
toy shop's queries mean, the ONNX export matches PyTorch, and adapted vectors never mix with stock.

A tiny random BERT stands in for MiniLM; the toy shop's queries use other words than its
items (crimson for red, footwear for boots), which the random encoder cannot know.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shoprank.config import Adapt, Text
from shoprank.text import ModelNotFoundError, TextEncoder, load_encoder
from shoprank.text.adapt import ONNX_DIR, mine_pairs, write_encoder
from shoprank.text.contrastive import fine_tune, retrieval_scores

HOUR = pd.Timedelta(hours=1)
T0 = pd.Timestamp("2026-03-01", tz="UTC")
COLOURS = {"red": "crimson", "blue": "navy", "green": "emerald", "black": "ebony"}
PRODUCTS = {"boots": "footwear", "shirt": "top", "lamp": "lighting", "mug": "cup"}
HELD_OUT = [("green", "lamp"), ("black", "shirt"), ("red", "mug")]


def toy_shop() -> tuple[list[str], list[tuple[str, str]], list[tuple[str, str]]]:
    """Item texts, and (query, item text) pairs to train on and to hold out."""
    items = {(c, p): f"{c} {p}" for c in COLOURS for p in PRODUCTS}
    pairs = {(c, p): (f"{COLOURS[c]} {PRODUCTS[p]}", text) for (c, p), text in items.items()}
    train = [pair for key, pair in pairs.items() if key not in HELD_OUT]
    return list(items.values()), train, [pairs[k] for k in HELD_OUT]


def toy_scores(encoder, items: list[str], pairs: list[tuple[str, str]]) -> dict:
    queries = [q for q, _ in pairs]
    rows = np.array([[i, items.index(t)] for i, (_, t) in enumerate(pairs)])
    return retrieval_scores(encoder.encode(queries), encoder.encode(items), rows, k=3)


@pytest.fixture(scope="module")
def adapted():
    """The tiny encoder before and after fine-tuning on the toy shop's training pairs."""
    stock = TextEncoder.tiny(seed=0, max_length=16)
    items, train, held_out = toy_shop()
    settings = Adapt(epochs=40, batch_size=16, lr=2e-3, max_length=16, warmup_share=0.05, log_every=10)
    trained, report = fine_tune(stock, [q for q, _ in train], [t for _, t in train], settings)
    return stock, trained, report


def test_fine_tuning_ranks_a_held_out_querys_clicked_item_higher_than_stock(adapted):
    stock, trained, report = adapted
    items, train, held_out = toy_shop()
    before, after = toy_scores(stock, items, held_out), toy_scores(trained, items, held_out)
    assert after["mrr"] > before["mrr"] + 0.2, (before, after)
    assert after["recall@3"] > before["recall@3"]
    assert report["steps"] == 40 and report["last_loss"] < report["first_loss"]
    assert trained.key != stock.key  # new weights, new key: the cache keeps them apart
    # the stock encoder itself is untouched
    np.testing.assert_array_equal(stock.encode(items), TextEncoder.tiny(seed=0, max_length=16).encode(items))


def test_saved_encoder_loads_back_and_its_onnx_export_gives_the_torch_vectors(adapted, tmp_path):
    from shoprank.text.onnx_encoder import OnnxTextEncoder

    _, trained, _ = adapted
    items, train, held_out = toy_shop()
    saved = write_encoder(trained, tmp_path / "adapted", [q for q, _ in train[:4]], 16, 8)
    texts = [*items, *(q for q, _ in held_out)]
    np.testing.assert_allclose(saved.encode(texts), trained.encode(texts), atol=1e-6)
    onnx = OnnxTextEncoder.load(tmp_path / "adapted" / ONNX_DIR)
    assert onnx.key == saved.key and saved.key.startswith("adapted@")
    np.testing.assert_allclose(onnx.encode(texts), saved.encode(texts), atol=1e-4)


def test_adapted_encoder_never_gets_stock_vectors_from_the_cache(adapted, tmp_path):
    """features' embedder, stock then adapted over the same cache folder and texts."""
    from shoprank.features import text_embedder

    stock, trained, _ = adapted
    stock_dir = tmp_path / "stock"
    stock.model.save_pretrained(stock_dir)
    stock.tokenizer.save_pretrained(stock_dir)
    text = Text(
        model_dir=stock_dir, max_length=16, cache_dir=tmp_path / "cache", encoders_dir=tmp_path / "enc"
    )
    items, _, _ = toy_shop()
    write_encoder(trained, text.adapted_dir, items[:4], 16, 64)
    stock_vecs = text_embedder(text)(items)
    adapted_text = text.model_copy(update={"encoder": "adapted"})
    adapted_vecs = text_embedder(adapted_text)(items)
    want = load_encoder(adapted_text).encode(items)
    np.testing.assert_allclose(adapted_vecs, want, atol=1e-4)
    assert np.abs(adapted_vecs - stock_vecs).max(axis=1).min() > 1e-3  # no row is a stock vector
    np.testing.assert_allclose(text_embedder(text)(items), stock_vecs)  # and stock still reads stock
    assert len([p for p in (tmp_path / "cache").iterdir() if p.name != "onnx"]) == 2


def test_adapted_encoder_missing_is_a_clear_error(tmp_path):
    text = Text(encoder="adapted", encoders_dir=tmp_path / "none")
    with pytest.raises(ModelNotFoundError, match="shoprank adapt"):
        load_encoder(text)


def _batch(folder: Path) -> Path:
    """Ten search requests an hour apart (plus one of an erased shopper), two items shown each."""
    catalog = pd.DataFrame(
        {"item_id": [f"i{k}" for k in range(4)], "title": list("ABCD"), "description": ["d"] * 4}
    )
    rows = []
    for r in range(10):
        query = "" if r == 3 else f"  Query {r} "  # request 3 is a feed
        for k, item in enumerate((f"i{r % 4}", f"i{(r + 1) % 4}")):
            rows.append((f"r{r}", T0 + r * HOUR, f"u{r}", item, query, int(k == 0)))
    rows.append(("r_gone", T0 + 1.5 * HOUR, "u_gone", "i3", "secret query", 1))
    rows.append(("r1", T0 + HOUR, "u1", "i3", "query 1", 1))  # a second click of request 1: kept
    rows.append(("r0", T0, "u0", "i0", "QUERY 0", 1))  # the same pair once normalised: kept once
    imp = pd.DataFrame(rows, columns=["request_id", "ts", "user_id", "item_id", "query", "clicked"])
    folder.mkdir()
    catalog.to_parquet(folder / "catalog.parquet")
    imp.to_parquet(folder / "impressions.parquet")
    return folder


def test_pairs_are_the_training_splits_clicked_search_rows_only(tmp_path):
    """Request starts 0..9 h: the cuts fall at 5.4 h and 7.2 h (val 0.2, test 0.2)."""
    pairs = mine_pairs(_batch(tmp_path / "batch"), 0.2, 0.2, erased=frozenset({"u_gone"}))
    train = set(map(tuple, pairs["train"][["query", "item_id"]].to_numpy()))
    assert train == {
        ("query 0", "i0"),
        ("query 1", "i1"),
        ("query 1", "i3"),
        ("query 2", "i2"),
        ("query 4", "i0"),
        ("query 5", "i1"),
    }
    assert len(pairs["train"]) == len(train)  # each pair once
    assert set(map(tuple, pairs["val"][["query", "item_id"]].to_numpy())) == {
        ("query 6", "i2"),
        ("query 7", "i3"),
    }
    assert pairs["train"].set_index("item_id")["text"].to_dict()["i1"] == "B. d"  # what features embeds
    with_erased = mine_pairs(tmp_path / "batch", 0.2, 0.2)
    assert "secret query" in set(with_erased["train"]["query"])


def test_a_log_without_searches_keeps_the_stock_encoder_and_says_why(tmp_path):
    """Feeds only: nothing to adapt on. With the stock encoder the step records why and writes the
    stock key `features` follows; asking for the adapted encoder then is a clear error."""
    import json

    import yaml

    from shoprank.config import load_params
    from shoprank.text.adapt import not_adapted
    from tests.conftest import ROOT

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
    raw["text"]["encoders_dir"] = str(tmp_path / "encoders")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw))
    params = load_params(tmp_path / "params.yaml")
    (tmp_path / "encoders" / "adapted").mkdir(parents=True)  # an older run's: must not stay
    pairs = {"train": pd.DataFrame(), "val": pd.DataFrame()}
    result = not_adapted(params, "stock-key", pairs, "0 distinct pairs")
    assert result["adapted"] is None and result["reason"] == "0 distinct pairs"
    assert json.loads((tmp_path / "encoders" / "stock.json").read_text())["key"] == "stock-key"
    assert not (tmp_path / "encoders" / "adapted").exists()
    written = json.loads((Path(params.paths.metrics) / "adapt.json").read_text())
    assert written == result
    adapted = params.model_copy(update={"text": params.text.model_copy(update={"encoder": "adapted"})})
    with pytest.raises(ValueError, match="text.encoder is adapted"):
        not_adapted(adapted, "stock-key", pairs, "0 distinct pairs")
