"""BERT-CTR and baselines on the tiny marketplace with a tiny BERT: behaviour, not figures."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch

from shoprank.evaluation.metrics import auc, log_loss
from shoprank.features.queries import normalise_query
from shoprank.inputs.frame import Frame
from shoprank.models.baselines import LightGBMModel, PopularityModel
from shoprank.models.bert_ctr import BertCTR
from shoprank.models.lightning import with_lora
from shoprank.models.scorers import NeuralScorer, load, save
from shoprank.training.data import time_split
from shoprank.training.train import feature_spec, fit_neural, purchase_head, train_candidate

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def encoder():
    from shoprank.text import TextEncoder

    return TextEncoder.tiny(seed=0, max_length=16)


@pytest.fixture(scope="module")
def frames(tiny_sim, encoder):
    """Training-set-shaped frames built straight from the tiny simulation (no Feast)."""
    cat, imp = tiny_sim.tables["catalog"], tiny_sim.tables["impressions"]
    text = (cat["title"] + ". " + cat["description"]).tolist()
    item_vec = encoder.encode(text)
    queries = imp["query"].unique().tolist()
    qv = dict(zip(queries, encoder.encode(queries), strict=True))
    row = pd.Series(np.arange(len(cat)), index=cat["item_id"])[imp["item_id"]].to_numpy()
    df = imp.rename(columns={"ts": "event_timestamp"}).reset_index(drop=True)
    df["category"] = cat["category"].to_numpy()[row]
    df["brand"] = cat["brand"].to_numpy()[row]
    df["log_price"] = np.log1p(cat["price"].to_numpy()[row])
    df["item_text"] = np.asarray(text, dtype=object)[row]
    df["query_text"] = [normalise_query(x) for x in df["query"]]
    q = np.stack([qv[x] if x else np.zeros(encoder.dim, np.float32) for x in df["query"]])
    frame = Frame(df, {"item_embedding": item_vec[row], "query_embedding": q})
    split = time_split(df, 0.15, 0.15)
    return {k: frame.take(v) for k, v in split.items()}, cat["item_id"].tolist(), item_vec


def quick(params, **changes):
    base = {
        "max_epochs": 2,
        "batch_size": 512,
        "patience": 2,
        "warmup_steps": 5,
        "lr": 5e-3,
        "mlp": (32,),
        "d": 16,
    }
    return params.train.model_copy(update={**base, **changes})


def base_rate_loss(split) -> float:
    rate = split["train"].df["clicked"].mean()
    y = split["val"].df["clicked"].to_numpy()
    return log_loss(y, np.full(len(y), rate))


@pytest.mark.parametrize("mode", ["frozen", "finetune", "lora"])
def test_each_mode_trains_and_its_loss_falls(params, frames, encoder, mode):
    split, item_ids, item_vec = frames
    if mode != "frozen":  # the encoder runs in the loop: a slice of the data keeps this quick
        split = {"train": split["train"].take(np.arange(6000)), "val": split["val"].take(np.arange(2000))}
    settings = quick(params, mode=mode, batch_size=256)
    spec = feature_spec(list(split["train"].df.columns))
    scorer, info = fit_neural(
        split["train"], split["val"], spec, item_ids, item_vec, settings, 8, use_text=True, encoder=encoder
    )
    y = split["val"].df["clicked"].to_numpy()
    trained = log_loss(y, scorer.predict(split["val"], with_position=True))
    assert info["best_val_loss"] == pytest.approx(trained, abs=0.01)
    # the same network before training: pretrained encoder (if any), fresh head
    enc = copy.deepcopy(encoder.model) if mode != "frozen" else None
    if mode == "lora":
        enc = with_lora(enc, scorer.cfg.lora_rank)
    torch.manual_seed(0)
    fresh = BertCTR(scorer.cfg, scorer.state["item_table"], enc).state_dict()
    untrained = log_loss(
        y,
        NeuralScorer(scorer.cfg, fresh, scorer.pre, 8, scorer.encoder_config).predict(
            split["val"], with_position=True
        ),
    )
    assert trained < untrained - 0.1
    if mode == "frozen":  # with the whole tiny data set it also learns more than the click rate
        assert trained < base_rate_loss(split)
    if mode != "frozen":
        assert scorer.encoder_config is not None
        before = {k: v for k, v in encoder.model.state_dict().items()}
        enc_state = {
            k.split("encoder.", 1)[1]: v for k, v in scorer.state.items() if k.startswith("encoder.")
        }
        word = [k for k in enc_state if k.endswith("word_embeddings.weight")][0]
        moved = not torch.equal(enc_state[word], before["embeddings.word_embeddings.weight"])
        # fine-tuning moves the pretrained weights; LoRA leaves them and trains adapters
        assert moved is (mode == "finetune")
        if mode == "lora":
            assert any("lora_" in k for k in scorer.state)


def test_position_tower_is_ignored_at_serving(params, frames, encoder, tmp_path):
    split, item_ids, item_vec = frames
    spec = feature_spec(list(split["train"].df.columns))
    scorer, _ = fit_neural(
        split["train"], split["val"], spec, item_ids, item_vec, quick(params), 8, use_text=True
    )
    test = split["test"]
    moved = Frame(
        test.df.assign(position=test.df["position"].sample(frac=1, random_state=0).to_numpy()), test.vectors
    )
    np.testing.assert_array_equal(scorer.predict(test), scorer.predict(moved))
    assert not np.allclose(
        scorer.predict(test, with_position=True), scorer.predict(moved, with_position=True)
    )
    # the position tower learned that lower positions get fewer clicks
    tower = scorer.model().position.weight.detach().squeeze().numpy()
    assert tower[1] > tower[10]

    path = save(scorer, tmp_path / "bert_ctr.pt", kind="bert_ctr")
    kind, again = load(path)
    assert kind == "bert_ctr" and path.with_suffix(".pt.sha256").is_file()
    np.testing.assert_allclose(again.predict(test), scorer.predict(test), rtol=1e-6)


def test_no_text_ablation_ignores_text(params, frames):
    split, item_ids, item_vec = frames
    spec = feature_spec(list(split["train"].df.columns))
    scorer, _ = fit_neural(
        split["train"], split["val"], spec, item_ids, item_vec, quick(params, max_epochs=1), 8, use_text=False
    )
    test = split["test"]
    scrambled = Frame(
        test.df,
        {
            k: np.random.default_rng(0).normal(size=v.shape).astype(np.float32)
            for k, v in test.vectors.items()
        },
    )
    np.testing.assert_array_equal(scorer.predict(test), scorer.predict(scrambled))


def test_popularity_is_a_position_debiased_item_ctr():
    df = pd.DataFrame(
        {
            "item_id": ["a"] * 4 + ["b"] * 4,
            "position": [1, 1, 2, 2] * 2,
            "clicked": [1, 1, 0, 0, 1, 0, 0, 0],
            "query": "",
        }
    )
    spec = feature_spec(list(df.columns))
    model = PopularityModel(prior_strength=0.0).fit(Frame(df, {}), spec)
    # global CTR 3/8; position 1 CTR 3/4 -> factor 2, position 2 -> 0; expected clicks per item 4 * 3/8 = 1.5
    # item a: 2 clicks / 1.5 expected * 3/8 = 0.5; item b: 1 / 1.5 * 3/8 = 0.25
    p = model.predict(Frame(pd.DataFrame({"item_id": ["a", "b", "c"], "position": [1, 1, 1]}), {}))
    np.testing.assert_allclose(p, [0.5, 0.25, 3 / 8])


def test_lightgbm_learns_from_the_shared_features(frames):
    split, _, _ = frames
    spec = feature_spec(list(split["train"].df.columns))
    model = LightGBMModel(rounds=50).fit(split["train"], split["val"], spec)
    y = split["test"].df["clicked"].to_numpy()
    assert auc(y, model.predict(split["test"], with_position=True)) > 0.65
    # serving scores do not depend on the logged position
    test = split["test"]
    moved = Frame(test.df.assign(position=20), test.vectors)
    np.testing.assert_array_equal(model.predict(test), model.predict(moved))


def with_cheap_buyers(split: dict[str, Frame]) -> dict[str, Frame]:
    """The frames with a purchase signal of their own: a click buys when the item is cheap.

    Whether the item is cheap says little about the click, so a head that ranks clicked
    rows by it has learnt the purchase part, not the click part.
    """
    cut = float(np.median(split["train"].df["log_price"]))
    return {
        k: Frame(
            f.df.assign(purchased=((f.df["clicked"] == 1) & (f.df["log_price"] < cut)).astype("int8")),
            f.vectors,
        )
        for k, f in split.items()
    }


def clicked_purchase_auc(scorer, test: Frame) -> float:
    clicked = test.df["clicked"].to_numpy() == 1
    return auc(test.df["purchased"].to_numpy()[clicked], scorer.predict_purchase(test)[clicked])


def test_purchase_head_learns_which_clicks_buy(params, frames):
    split, item_ids, item_vec = frames
    split = with_cheap_buyers(split)
    assert purchase_head("no_text", split["train"]) == "on"
    spec = feature_spec(list(split["train"].df.columns))
    scorer, _ = fit_neural(
        split["train"],
        split["val"],
        spec,
        item_ids,
        item_vec,
        quick(params),
        8,
        use_text=False,
        purchase=True,
    )
    assert clicked_purchase_auc(scorer, split["test"]) > 0.75
    # the click head still ranks clicks better than chance
    y = split["test"].df["clicked"].to_numpy()
    assert auc(y, scorer.predict(split["test"], with_position=True)) > 0.55


def test_lightgbm_purchase_booster_learns_which_clicks_buy(frames):
    split, _, _ = frames
    split = with_cheap_buyers(split)
    spec = feature_spec(list(split["train"].df.columns))
    model = LightGBMModel(rounds=50).fit(split["train"], split["val"], spec, purchase=True)
    assert clicked_purchase_auc(model, split["test"]) > 0.75
    assert (
        LightGBMModel(rounds=5).fit(split["train"], split["val"], spec).predict_purchase(split["test"])
        is None
    )


def test_purchase_head_is_off_without_purchases(params, frames, tmp_path):
    split, item_ids, item_vec = frames
    bare = {k: Frame(f.df.drop(columns=["purchased"]), f.vectors) for k, f in split.items()}
    zeros = Frame(split["train"].df.assign(purchased=0), split["train"].vectors)
    for frame in (bare["train"], zeros):
        assert "no purchases" in purchase_head("no_text", frame)
    assert "clicks only" in purchase_head("popularity", split["train"])
    result = train_candidate(
        "no_text", bare["train"], bare["val"], item_ids, item_vec, quick(params, max_epochs=1), 8, tmp_path
    )
    assert "no purchases" in result.purchase_head
    assert load(result.artifact)[1].predict_purchase(bare["test"]) is None


def test_a_bias_input_shifts_every_candidate_of_a_request_alike():
    """The shopper's day so far moves how likely a click is, never which item ranks first."""
    import torch

    from shoprank.models.bert_ctr import BertCTR, CTRConfig

    torch.manual_seed(0)
    cfg = CTRConfig(text_dim=8, n_numeric=3, d=4, mlp=(8,), use_text=False, bias_numeric=(1,))
    model = BertCTR(cfg).eval()
    num = torch.randn(6, 3)  # six candidates of one request: item inputs differ, the bias column too
    shifted = num.clone()
    shifted[:, 1] = 5.0  # the same day so far for all of them
    base = num.clone()
    base[:, 1] = -1.0
    with torch.no_grad():
        delta = model.relevance({"num": shifted}) - model.relevance({"num": base})
        crossed = num.clone()
        crossed[:, 0] += 1.0  # an item input is crossed: it changes candidates differently
        moved = model.relevance({"num": crossed}) - model.relevance({"num": num})
    assert torch.allclose(delta, delta[0].expand_as(delta), atol=1e-6) and delta.abs().max() > 0
    assert not torch.allclose(moved, moved[0].expand_as(moved), atol=1e-4)
