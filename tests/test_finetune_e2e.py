"""BERT-CTR with its encoder in the loop (train.mode finetune and lora), from training to serving.

The tiny pipeline runs once through the CLI up to the training set, with a tiny random BERT
as the text encoder (text.model_dir: a saved ``TextEncoder.tiny``). Each mode then trains
bert_ctr alone into its own models and metrics folders (so it is promoted: the only
candidate, and no champion before it), is evaluated, checked for drift, selected, packaged
into a private BENTOML_HOME and served by an in-process Ranker. The served answers must come
from the fine-tuned model (never the popularity fallback), and its served scores must be the
ones evaluation computes for the same request.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from shoprank.ranking.explain import impacts
from tests.conftest import step, tiny_raw_params
from tests.serving_fixtures import ServingEnv, logged_queries

pytestmark = [pytest.mark.slow, pytest.mark.integration]
MODES = ("finetune", "lora")


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> tuple[Path, dict]:
    """simulate .. training-set on the tiny profile, the features encoded by a tiny random BERT."""
    from shoprank.text import TextEncoder

    root = tmp_path_factory.mktemp("finetune")
    tiny = TextEncoder.tiny(seed=0, max_length=16)
    encoder_dir = root / "tiny-bert"
    tiny.model.save_pretrained(encoder_dir)
    tiny.tokenizer.save_pretrained(encoder_dir)
    raw = tiny_raw_params(root)
    raw["text"].update({"model_dir": str(encoder_dir), "max_length": 16})
    raw["train"]["candidates"] = {"bert_ctr": raw["train"]["candidates"]["bert_ctr"]}
    raw["train"].update({"max_epochs": 1, "warmup_steps": 5})
    params_file = root / "params.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    for name in ("simulate", "validate", "features", "materialize", "training-set"):
        step(name, params_file)
    return root, raw


@pytest.fixture(scope="module", params=MODES)
def served(request, pipeline):
    """One mode trained, evaluated, selected, packaged and loaded by a Ranker."""

    mode, (root, base) = request.param, pipeline
    raw = copy.deepcopy(base)
    raw["train"]["mode"] = mode
    raw["paths"].update({"models": str(root / mode / "models"), "metrics": str(root / mode / "metrics")})
    params_file = root / f"params-{mode}.yaml"
    params_file.write_text(yaml.safe_dump(raw))
    for name in ("understand", "train", "evaluate", "drift"):  # understand: filled attributes, heads
        step(name, params_file)
    assert "promoted" in step("select", params_file)
    env, params, ranker = ServingEnv.packaged_ranker(root, params_file, raw)
    yield mode, env, params, ranker
    ranker.stop_refresh()


def test_the_fine_tuned_champion_ships_its_encoder_and_tokenizer(served):
    from shoprank.models.scorers import load, reads_text

    mode, env, params, ranker = served
    report = json.loads((Path(params.paths.metrics) / "evaluate.json").read_text())
    assert report["winner"] == "bert_ctr" and 0.5 < report["candidates"]["bert_ctr"]["auc"] <= 1
    drift = json.loads((Path(params.paths.metrics) / "drift.json").read_text())
    assert drift["scores"]["candidate"] == "bert_ctr" and drift["scores"]["psi"] is not None
    manifest = json.loads((env.bundle / "manifest.json").read_text())
    assert manifest["champion"]["candidate"] == "bert_ctr" and manifest["text_mode"] == mode
    # the query encoder stays the stock one: the features and the retrieval index were built with it
    assert manifest["encoder"]["model_dir"] == str(params.text.model_dir)
    kind, scorer = load(env.bundle / "scorer.pt")
    assert kind == "bert_ctr" and reads_text(scorer) and scorer.cfg.mode == mode
    assert any(k.startswith("encoder.") for k in scorer.state)
    assert any("lora_" in k for k in scorer.state) is (mode == "lora")
    # the tokenizer is the scorer's own: the model folder it was trained from is not needed
    ids, mask = scorer.pre.tokenizer(["waterproof hiking boots", ""])
    assert ids.shape == mask.shape == (2, params.text.max_length) and mask[0].sum() > mask[1].sum()


def test_search_and_rank_are_served_by_the_fine_tuned_model(served):
    mode, env, params, ranker = served
    assert ranker.fast is not None, "the start-up check rejected the fast path"
    for query in [*logged_queries(env)[:2], "warm socks for winter"]:
        page = ranker.search(query, k=10)
        assert page["results"], query
        assert page["degraded"] is False and page["fallback"] is None, (query, page["fallback"])
    items = ranker.item_ids[:12].tolist()
    for query in (logged_queries(env)[0], ""):
        ranked = ranker.rank(query, "user_000003", items)
        assert ranked["degraded"] is False and ranked["fallback"] is None
        assert sorted(ranked["order"]) == sorted(items)


@pytest.mark.parametrize("which", ["search", "feed"])
def test_served_scores_are_the_scores_evaluation_computes(served, which):
    """One request scored by the service (fast path and frame) and by evaluation's candidate frame."""
    from shoprank.evaluation.step import candidate_frame, texts_for

    mode, env, params, ranker = served
    query = logged_queries(env)[0] if which == "search" else ""
    rows = np.arange(0, len(ranker.item_ids), max(1, len(ranker.item_ids) // 15))
    s = ranker.score(rows, query, None, "r_" + "1" * 32, {})
    assert not s.fallback
    frame = ranker.frame_of(s)
    np.testing.assert_allclose(s.p_click, ranker.scorer.predict(frame), atol=1e-5)
    # evaluation's point-in-time features of the same request, now: what the online store serves
    test = pd.DataFrame(
        {"request_id": [s.request_id], "event_timestamp": [pd.Timestamp.now(tz="UTC")], "user_id": [""]}
    ).assign(query=query)
    candidates = pd.DataFrame({"request_id": s.request_id, "item_id": ranker.item_ids[rows]})
    offline = candidate_frame(params, test, candidates, texts=texts_for(params, [ranker.scorer]))
    for column in ("item_text", "query_text"):
        assert offline.df[column].fillna("").tolist() == frame.df[column].tolist(), column
    # the shopper's day so far is the service's own count (the store knows past days only)
    for column in ("user_impressions_today", "user_ctr_today"):
        offline.df[column] = frame.df[column].to_numpy()
    want = ranker.scorer.predict(offline, with_position=False)
    np.testing.assert_allclose(s.p_click, want, atol=1e-5)
    assert np.ptp(want) > 0  # the candidates are told apart
    # reasons: occlusion on the fast path's arrays (tokens included) == occlusion on the frame
    idx = np.arange(4)
    _, on_frame = impacts(ranker.scorer, ranker.frame_of(s, idx))
    _, on_arrays = ranker.explainer.fast_impacts(s, idx)
    assert "query_match" in on_arrays
    for group, drop in on_frame.items():
        np.testing.assert_allclose(on_arrays.get(group, 0.0 * drop), drop, atol=1e-5, err_msg=group)
