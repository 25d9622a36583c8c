"""text.encoder adapted, from `shoprank adapt` to the service's query vectors, on the tiny profile.

The tiny pipeline runs through the CLI with a tiny random BERT as the stock encoder
(text.model_dir): adapt fine-tunes it, features embed with the adapted weights, bert_ctr
trains, is evaluated, selected and packaged with the adapted encoder, and an in-process
Ranker encodes an unseen query exactly as the adapted encoder does.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import step, tiny_raw_params
from tests.serving_fixtures import ServingEnv, logged_queries

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from shoprank.text import TextEncoder

    root = tmp_path_factory.mktemp("adapted")
    tiny = TextEncoder.tiny(seed=0, max_length=16)
    stock_dir = root / "tiny-bert"
    tiny.model.save_pretrained(stock_dir)
    tiny.tokenizer.save_pretrained(stock_dir)
    raw = tiny_raw_params(root)
    raw["text"].update({"model_dir": str(stock_dir), "max_length": 16, "encoder": "adapted"})
    raw["adapt"].update({"max_length": 16, "lr": 1e-3})
    raw["train"]["candidates"] = {"bert_ctr": raw["train"]["candidates"]["bert_ctr"]}
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    step("simulate", params_file)
    step("validate", params_file)
    adapt_output = step("adapt", params_file)
    for name in ("features", "materialize", "training-set", "train", "evaluate"):
        step(name, params_file)
    assert "promoted" in step("select", params_file)
    step("understand", params_file)
    env, params, ranker = ServingEnv.packaged_ranker(root, params_file, raw)
    yield params, env, ranker, adapt_output
    ranker.stop_refresh()


def test_adapt_compares_both_encoders_and_features_use_the_adapted_one(served):
    from shoprank.inputs.items import item_embeddings
    from shoprank.inputs.texts import batch_texts
    from shoprank.quality import current_batch
    from shoprank.text import load_encoder

    params, env, ranker, output = served
    report = json.loads((Path(params.paths.metrics) / "adapt.json").read_text())
    assert report["stock"]["key"] != report["adapted"]["key"]
    assert report["stock"]["pairs"] == report["adapted"]["pairs"] > 0
    assert report["pairs"]["used"] <= params.adapt.max_pairs and report["training"]["steps"] > 0
    assert "stock" in output and "adapted" in output
    adapted = load_encoder(params.text, device="cpu")
    assert adapted.key == report["adapted"]["key"]
    identity = json.loads((params.text.encoders_dir / "adapted.json").read_text())
    assert identity["key"] == adapted.key
    ids, vecs = item_embeddings(params.paths.features)
    texts = batch_texts(current_batch(params.paths.validated))
    want = adapted.encode(texts.loc[ids[:20]].tolist())
    np.testing.assert_allclose(vecs[:20], want, atol=1e-4)


def test_the_bundle_ships_the_adapted_encoder_and_the_service_encodes_with_it(served):
    from shoprank.ranking.loader import load_encoder as load_served_encoder
    from shoprank.text import load_encoder

    params, env, ranker, _ = served
    adapted = load_encoder(params.text, device="cpu")
    manifest = json.loads((env.bundle / "manifest.json").read_text())
    assert manifest["encoder"]["name"] == "adapted" and manifest["encoder"]["key"] == adapted.key
    assert manifest["encoder"]["onnx"] and manifest["encoder"]["weights"]
    assert ranker.encoder.key == adapted.key
    query = "waterproof hiking boots for a rainy weekend"  # never logged: the encoder answers
    assert query not in set(logged_queries(env))
    vec, source = ranker.query_vectors.vector(query)
    assert source == "encoder"
    np.testing.assert_allclose(vec, adapted.encode([query])[0], atol=1e-4)
    # the PyTorch fallback reads the weights in the bundle, not the project's folder
    settings = params.serve.model_copy(update={"encoder_runtime": "torch"})
    fallback = load_served_encoder(env.bundle, manifest["encoder"], params.text, settings)
    assert fallback.key == adapted.key
    page = ranker.search(query, k=5)
    assert page["results"] and page["fallback"] is None
