"""The whole pipeline through the CLI on the tiny profile, as dvc.yaml and Airflow will run it."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import ROOT, step, tiny_raw_params

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    raw = tiny_raw_params(tmp)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def test_tiny_pipeline_end_to_end(params_file):
    path, raw = params_file
    # dvc.yaml's order: understand fills the catalogue's missing attributes that train and evaluate read
    for name in ("simulate", "validate", "features", "materialize", "training-set", "understand", "train"):
        step(name, path)
    filled = json.loads((ROOT / raw["paths"]["metrics"] / "understand.json").read_text())["filled"]
    assert filled["colour"]["filled_share"] > 0  # the candidates were trained on filled colours
    step("evaluate", path)
    report = json.loads((ROOT / raw["paths"]["metrics"] / "evaluate.json").read_text())
    assert set(report["candidates"]) == {"bert_ctr", "no_text", "lightgbm", "popularity", "cf"}
    for metrics in report["candidates"].values():
        for key in (
            "auc",
            "logloss",
            "gauc",
            "ndcg@10",
            "mrr",
            "ece",
            "auc_new_items",
            "auc_unseen_queries",
            "auc_over_oracle",
            "oracle_uplift_share",
            "snips_ctr",
            "expected_revenue@10",
            "expected_revenue@10_oracle",
        ):
            assert key in metrics
        assert 0.5 < metrics["auc"] <= metrics["bayes_auc"] + 0.05
        assert metrics["expected_revenue@10"] <= metrics["expected_revenue@10_oracle"] + 1e-9
    for name in ("bert_ctr", "no_text", "lightgbm"):  # the candidates with a purchase head
        assert {"purchase_auc", "purchase_logloss"} <= set(report["candidates"][name])
    assert "purchase_auc" not in report["not_computed"]
    assert report["winner"] in report["candidates"]

    first = step("select", path)
    assert "promoted" in first
    champion = json.loads((ROOT / raw["paths"]["models"] / "champion.json").read_text())
    assert champion["candidate"] == report["winner"]
    assert {"data_version", "params_hash", "code_version"} <= set(champion["lineage"])
    assert "champion" not in report  # there was none to re-score

    # the next evaluation scores the champion on its own test split: the same artifact, the same rows
    step("evaluate", path)
    rescored = json.loads((ROOT / raw["paths"]["metrics"] / "evaluate.json").read_text())
    assert rescored["champion"]["version"] == champion["version"]
    same = rescored["candidates"][report["winner"]]
    for key in ("auc", "gauc", "oracle_uplift_share"):
        assert rescored["champion"]["metrics"][key] == pytest.approx(same[key])
    again = step("select", path)  # the same winner does not beat itself by the margin
    assert "kept the champion" in again and "on the same test split" in again


def test_candidate_pool_scored_in_chunks_equals_one_pass(params_file):
    """Evaluation scores the full candidate pool a chunk of requests at a time (memory at
    scale); the scores must not depend on the chunking."""
    import numpy as np

    from shoprank.config import load_params
    from shoprank.evaluation.step import candidate_scores, load_truth
    from shoprank.inputs.frame import read_frame
    from shoprank.models.scorers import load
    from shoprank.training.data import read_split
    from shoprank.training.train import training_set_path

    path, raw = params_file
    if not (ROOT / raw["paths"]["models"] / "candidates" / "bert_ctr.pt").is_file():
        for name in ("simulate", "validate", "features", "materialize", "training-set", "train"):
            step(name, path)
    params = load_params(path)
    split, _ = read_split(training_set_path(params), params.train.val_share, params.train.test_share)
    test = read_frame(training_set_path(params), rows=split["test"]).df
    truth = load_truth(params.paths.truth, test)
    scorers = {
        n: load(ROOT / raw["paths"]["models"] / "candidates" / f"{n}.pt")[1] for n in ("bert_ctr", "lightgbm")
    }
    whole = candidate_scores(params, test, truth, scorers, chunk_rows=10**9)
    chunked = candidate_scores(params, test, truth, scorers, chunk_rows=97)  # many chunks, uneven
    n_requests = truth.candidates["request_id"].nunique()
    assert n_requests > 3 and len(truth.candidates) > 3 * 97
    for name in scorers:
        assert np.isfinite(whole[name].click).all()
        np.testing.assert_allclose(chunked[name].click, whole[name].click, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(chunked[name].purchase, whole[name].purchase, rtol=1e-5, atol=1e-6)
