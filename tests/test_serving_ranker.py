"""The in-process Ranker on the packaged tiny champion (the session's ``serving_env``).

The array fast path against the evaluation path, the ONNX and PyTorch query encoders,
where query vectors come from, and the background refresh of item features.
"""

from __future__ import annotations

import logging
import shutil
import time

import numpy as np
import pandas as pd
import pytest

from shoprank.ranking.explain import impacts
from tests.serving_fixtures import logged_queries


@pytest.mark.slow
@pytest.mark.integration
def test_fast_path_inputs_and_scores_equal_the_evaluation_path(serving_env, monkeypatch):
    """The array hot path against derive + the champion's own preprocessing and predict."""
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "0")  # no background refresher in the test process
    ranker = Ranker(serving_env.bundle, load_params(serving_env.params_file))
    assert ranker.fast is not None, "the start-up check rejected the fast path"
    rows = np.arange(min(60, len(ranker.items)))
    for user in (ranker.shopper("user_000003"), "user_unknown", None):  # score takes pseudonyms
        for query in ("waterproof hiking boots", "", "hiking boots under 80"):
            s = ranker.score(rows, query, user, "r_" + "0" * 32, {})
            frame = ranker.frame_of(s)
            want = ranker.scorer.pre.transform(frame, ranker.scorer.history_length)
            got = ranker.fast.inputs(rows, s.lookup, s.q_vec, query, ranker.vectors[rows])
            for key, value in want.items():
                np.testing.assert_allclose(got[key], value, atol=1e-5, err_msg=f"{key} {user} {query!r}")
            np.testing.assert_allclose(s.scores, ranker.scorer.predict(frame), atol=1e-5)
            idx = np.arange(6)  # explanations: occlusion on arrays == occlusion on the frame
            _, want_drops = impacts(ranker.scorer, ranker.frame_of(s, idx))
            _, got_drops = ranker.explainer.fast_impacts(s, idx)
            for group, drop in want_drops.items():
                np.testing.assert_allclose(got_drops.get(group, 0.0 * drop), drop, atol=1e-5, err_msg=group)


class CountingEncoder:
    """The ranker's encoder, counting the texts it is asked to embed."""

    def __init__(self, encoder):
        self.encoder, self.texts = encoder, []

    def encode(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return self.encoder.encode(texts)


@pytest.mark.slow
@pytest.mark.integration
def test_onnx_and_torch_query_encoders_agree_and_a_broken_graph_falls_back(serving_env, monkeypatch, caplog):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    params = load_params(serving_env.params_file)
    queries = ["waterproof trail tent 7391", "x", "a gift for my sister who likes hiking and coffee"]
    onnx = Ranker(serving_env.bundle, params).encoder
    monkeypatch.setenv("SHOPRANK__SERVE__ENCODER_RUNTIME", "torch")
    torch_ranker = Ranker(serving_env.bundle, load_params(serving_env.params_file))
    assert torch_ranker.encoder_runtime == "torch" and torch_ranker.ready()["encoder_runtime"] == "torch"
    np.testing.assert_allclose(onnx.encode(queries), torch_ranker.encoder.encode(queries), atol=1e-5)
    monkeypatch.setenv("SHOPRANK__SERVE__ENCODER_RUNTIME", "onnx")
    params = load_params(serving_env.params_file)
    bundle = serving_env.root / "broken-bundle"
    shutil.copytree(serving_env.bundle, bundle)
    (bundle / "encoder" / "model.onnx").write_bytes(b"not a graph")
    with caplog.at_level(logging.WARNING):
        broken = Ranker(bundle, params)
    assert broken.encoder_runtime == "torch" and "ONNX query encoder unusable" in caplog.text
    np.testing.assert_array_equal(broken.encoder.encode(queries), torch_ranker.encoder.encode(queries))


@pytest.mark.slow
@pytest.mark.integration
def test_query_vectors_come_from_the_cache_the_store_then_the_encoder(serving_env, monkeypatch):
    """A logged query is served with the store's vector (no BERT pass); an unseen one is encoded;
    the store's vector is the encoder's (train/serve consistency: the model was trained on it)."""
    from shoprank.config import load_params
    from shoprank.features.queries import normalise_query, query_id
    from shoprank.ranking.ranker import Ranker

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "600")  # items stay fresh: query-only reads
    params = load_params(serving_env.params_file)
    ranker = Ranker(serving_env.bundle, params)
    assert ranker.encoder_runtime == "onnx"  # the default: the bundle's exported graph
    counting = ranker.encoder = CountingEncoder(ranker.encoder)
    logged = logged_queries(serving_env)
    assert len(logged) >= 6
    rows = np.arange(min(50, len(ranker.items)))
    items = ranker.item_ids[rows].tolist()

    # the store and the encoder agree on logged queries' vectors
    stored = np.stack([ranker.features.query_vector(query_id(q)) for q in logged[:20]])
    encoded = counting.encoder.encode([normalise_query(q) for q in logged[:20]])
    cosine = (stored * encoded).sum(1) / np.linalg.norm(stored, axis=1) / np.linalg.norm(encoded, axis=1)
    assert cosine.min() > 0.9999, cosine.min()

    # rank: the items are fresh, so the query is read alone; then the process cache
    first = ranker.rank(logged[0].upper() + "  ", None, items)  # normalised like the store's key
    again = ranker.rank(logged[0], "user_000003", items)
    assert (first["query_vector"], again["query_vector"]) == ("store", "cache") and counting.texts == []
    assert first["degraded"] is False and "encode" not in first["timings_ms"]
    # the same vector (and so the same scores) as a BERT pass would have given
    ranker.query_vectors.clear()
    by_store = ranker.score(rows, logged[1], ranker.shopper("user_000003"), "r_" + "0" * 32, {})
    ranker.query_vectors.clear()
    monkeypatch.setattr(ranker.features, "query_vector", lambda qid: None)
    by_encoder = ranker.score(rows, logged[1], ranker.shopper("user_000003"), "r_" + "0" * 32, {})
    monkeypatch.undo()
    assert (by_store.query_vector, by_encoder.query_vector) == ("store", "encoder")
    np.testing.assert_allclose(by_store.scores, by_encoder.scores, atol=1e-5)
    counting.texts.clear()

    # the vector rides on a store read the items need anyway (stale items)
    ranker.features.fetched[rows] = -np.inf
    stale = ranker.rank(logged[2], None, items)
    assert stale["query_vector"] == "store" and counting.texts == []

    # search reads the query alone before retrieval; intent too
    assert ranker.search(logged[3], k=5)["query_vector"] == "store"
    assert ranker.intent(logged[4])["query_vector"] == "store"
    assert counting.texts == []

    # a query the logs never had: one BERT pass, then cached
    unseen = "waterproof trail tent 7391"
    assert ranker.rank(unseen, None, items)["query_vector"] == "encoder"
    assert ranker.search(unseen, k=5)["query_vector"] == "cache"
    assert counting.texts == [unseen]
    feed = ranker.rank("", None, items)
    assert feed["query_vector"] is None and counting.texts == [unseen]


@pytest.mark.slow
@pytest.mark.integration
def test_store_down_query_vectors_come_from_the_encoder(serving_env, monkeypatch):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    def down():
        raise ConnectionError("online store down")

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "600")
    ranker = Ranker(serving_env.bundle, load_params(serving_env.params_file), open_store=down)
    counting = ranker.encoder = CountingEncoder(ranker.encoder)
    logged = logged_queries(serving_env)
    items = ranker.item_ids[:20].tolist()
    ranked = ranker.rank(logged[0], "user_000003", items)
    assert ranked["query_vector"] == "encoder" and ranked["fallback"] == "online_store_unreachable"
    assert ranker.search(logged[1], k=5)["query_vector"] == "encoder"
    assert ranker.intent(logged[2])["query_vector"] == "encoder"
    assert counting.texts == logged[:3]


@pytest.mark.slow
@pytest.mark.integration
def test_item_features_are_refreshed_in_the_background(serving_env, monkeypatch):
    """With a TTL, a thread re-reads the item table every TTL/2: requests find items fresh."""
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "1")  # refresh every 0.5 s
    ranker = Ranker(serving_env.bundle, load_params(serving_env.params_file))
    try:
        assert ranker.refresher.thread is not None and ranker.refresher.thread.is_alive()
        ranker.features.fetched[:] = -np.inf  # every item stale; no request follows
        deadline = time.monotonic() + 30
        while np.isinf(ranker.features.fetched).any() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert np.isfinite(ranker.features.fetched).all(), "the background refresh did not re-read the items"
        s = ranker.score(np.arange(min(20, len(ranker.items))), "", None, "r_" + "0" * 32, {})
        assert s.lookup.store_calls == 0  # fresh: the request did not wait on the store
    finally:
        ranker.stop_refresh()
    assert not ranker.refresher.thread.is_alive()
    # a refresh that finds the store unchanged does not make the item arrays be rebuilt;
    # a value that differs from the store's is replaced, and the arrays follow
    features = ranker.features
    features.refresh_all()
    version = features.version
    assert features.refresh_all() == len(ranker.items) and features.version == version
    price = features.values["price"].copy()
    features.values.loc[0, "price"] = -1.0
    features.refresh_all()
    assert features.version > version
    pd.testing.assert_series_equal(features.values["price"], price)

    # the background refresh skips an unchanged SQLite store, and re-reads after a commit to it
    import sqlite3

    assert features.refresh_all(if_changed=True) == 0  # the full refresh above saw this state
    features.values.loc[0, "price"] = -1.0  # (a local edit the store does not know about)
    with sqlite3.connect(features.store().path) as conn:  # any commit by another connection
        conn.execute("CREATE TABLE touched (x)")
        conn.execute("DROP TABLE touched")
    assert features.refresh_all(if_changed=True) == len(ranker.items)
    pd.testing.assert_series_equal(features.values["price"], price)
    assert features.refresh_all(if_changed=True) == 0


@pytest.mark.slow
@pytest.mark.integration
def test_filled_attributes_feed_both_paths_and_are_answered_as_inferred(serving_env, monkeypatch):
    """An item whose colour `understand` filled: the query naming it matches on the fast path and the
    frame path alike, and /rank's answer shows the colour marked inferred."""
    from shoprank.config import load_params
    from shoprank.models.attributes import pipeline_filled
    from shoprank.ranking.ranker import Ranker

    monkeypatch.setenv("SHOPRANK__SERVE__FEATURE_TTL_S", "0")
    params = load_params(serving_env.params_file)
    ranker = Ranker(serving_env.bundle, params)
    filled = ranker.catalog.filled
    assert filled and len(filled["colour"]), "the tiny catalogue has colours to fill"
    shipped = pipeline_filled(params.paths.models)  # what training and evaluation read
    assert shipped is not None and shipped["colour"].equals(filled["colour"])
    item, colour = next(iter(filled["colour"].items()))
    row = ranker.row_of[item]
    assert pd.isna(ranker.items.loc[row, "colour"])  # the catalogue's field is empty
    rows = np.array([row, *[r for r in range(8) if r != row]])
    query = f"{colour} gear"
    s = ranker.score(rows, query, None, "r_" + "0" * 32, {})
    frame = ranker.frame_of(s)
    assert frame.df["colour"].iloc[0] == colour and frame.df["query_colour_match"].iloc[0] == 1.0
    fast = ranker.fast.cross_arrays(rows, s.lookup, query, ["query_colour_match"])["query_colour_match"]
    np.testing.assert_array_equal(fast, frame.df["query_colour_match"].to_numpy())
    want = ranker.scorer.pre.transform(frame, ranker.scorer.history_length)
    got = ranker.fast.inputs(rows, s.lookup, s.q_vec, query, ranker.vectors[rows])
    for key, value in want.items():
        np.testing.assert_allclose(got[key], value, atol=1e-5, err_msg=key)
    answer = ranker.rank(query, None, [item])
    assert answer["results"][0]["attributes"]["colour"] == {"value": colour, "inferred": True}
