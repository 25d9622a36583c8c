"""The declaration of model inputs: one entry reaches training, evaluation, serving and explanations."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shoprank.inputs import declare
from shoprank.inputs.apply import derive
from shoprank.inputs.declare import Input, declared
from shoprank.inputs.derive import DERIVATIONS, Derivation, floats
from shoprank.inputs.frame import Frame
from shoprank.models.preprocess import feature_spec

ROOT = Path(__file__).resolve().parents[1]


def test_every_input_has_a_known_source_and_group():
    for x in declare.INPUTS:
        if x.derive is not None:
            reads = DERIVATIONS[x.derive].reads
            for r in reads:  # a derivation reads declared inputs or documented sources
                assert r in declare.SOURCES or declare.by_name(r), (x.name, r)
        assert x.group is None or x.group in declare.GROUPS


def test_stored_inputs_are_fields_of_their_feast_view(params, monkeypatch):
    import importlib

    monkeypatch.syspath_prepend(str(ROOT / "features"))
    repo = importlib.import_module("feature_views")
    for x in declare.inputs(params.features.windows_days):
        if x.view is not None:
            fields = {f.name for f in getattr(repo, x.view).features}
            assert x.name in fields, f"{x.name} is not a field of the {x.view} view"


def test_a_declaration_with_two_sources_or_none_is_rejected():
    with pytest.raises(ValueError, match="give one source"):
        Input("bad", "numeric", "item", "two sources", view="item_profile", derive="price_vs_pref")
    with pytest.raises(ValueError, match="only a request's own value"):
        Input("bad", "numeric", "item", "no source")
    assert Input("hour", "numeric", "request", "a request's own value").view is None
    with pytest.raises(ValueError, match="unknown explanation group"):
        Input("bad", "numeric", "item", "no such group", view="item_profile", group="nope")


def test_the_docs_feature_table_is_generated_from_the_declaration():
    text = (ROOT / "docs" / "features.md").read_text()
    block = re.search(r"<!-- inputs:begin -->\n(.*?)<!-- inputs:end -->", text, re.S)
    assert block, "docs/features.md lacks the generated inputs table"
    assert block.group(1) == declare.markdown(), "run `python -m shoprank.inputs` to regenerate it"


def test_feature_services_read_the_views_the_candidates_use():
    assert declare.views(["bert_ctr"]) == [
        "item_profile",
        "item_stats",
        "item_text",
        "user_profile",
        "user_stats",
        "user_history",
        "query_text",
    ]
    assert "item_text" not in declare.views(["no_text"]) and "query_text" not in declare.views(["no_text"])


# --- a toy derived input, declared only here, flows through every path --------------------


def _toy_parts(cols):
    return {"price:cents_odd": (np.round(floats(cols["price"]) * 100) % 2).astype(np.float32)}


def _toy_cross(cols):
    # an odd price in cents, for a shopper whose history is long: item parts x request values
    n = np.array([0 if h is None or isinstance(h, float) else len(h) for h in cols["recent_categories"]])
    return cols["price:cents_odd"] * (n > 1)


TOY = Input("toy_odd_price", "cross", "item", "odd cents, long history", derive="toy", group="price")
TOY_DERIVATION = {"toy": Derivation(("price", "recent_categories"), _toy_cross, _toy_parts)}


@pytest.fixture
def toy():
    with declared(TOY, derivations=TOY_DERIVATION):
        yield


def _frame(n: int = 400, seed: int = 0) -> tuple[Frame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    items = pd.DataFrame(
        {
            "item_id": [f"i{j}" for j in range(40)],
            "price": np.round(rng.uniform(5, 50, 40), 2),
            "category": rng.choice(["a > x", "a > y", "b > z"], 40),
            "brand": rng.choice(["acme", "zeta"], 40),
            "log_price": 0.0,
        }
    )
    items["log_price"] = np.log1p(items["price"])
    rows = rng.integers(0, 40, n)
    df = items.iloc[rows].reset_index(drop=True)
    hist = [list(rng.choice(["a > x", "b > z"], k)) for k in rng.integers(0, 4, n)]
    df["recent_categories"] = pd.Series(hist, dtype=object)
    df["recent_items"] = pd.Series(
        [[f"i{j}" for j in rng.integers(0, 40, 3)] for _ in range(n)], dtype=object
    )
    df["user_price_pref"] = rng.uniform(5, 50, n)
    df["query"] = rng.choice(["acme boots under 20", "", "zeta"], n)
    df["request_id"] = [f"r{r // 10}" for r in range(n)]
    df["position"] = np.arange(n) % 10 + 1
    df["clicked"] = (rng.random(n) < 0.2 + 0.3 * (df["price"] < 20)).astype(int)
    dim = 8
    vectors = {"query_embedding": rng.normal(size=(n, dim)), "item_embedding": rng.normal(size=(n, dim))}
    return Frame(df, {k: v.astype(np.float32) for k, v in vectors.items()}), items


def test_toy_input_flows_through_training_evaluation_serving_and_explanations(toy, params):
    from shoprank.models.baselines import LightGBMModel
    from shoprank.ranking import explain
    from shoprank.ranking.fastpath import FastScorer
    from shoprank.ranking.features import Lookup
    from shoprank.training.train import fit_neural

    frame, items = _frame()
    derive(frame)
    want = _toy_cross({**_toy_parts(frame.df), "recent_categories": frame.df["recent_categories"].to_numpy()})
    np.testing.assert_array_equal(frame.df["toy_odd_price"].to_numpy(), want)
    assert 0 < want.sum() < len(want)

    # training: the neural candidate and LightGBM both read it
    spec = feature_spec(list(frame.df.columns), "bert_ctr")
    assert "toy_odd_price" in spec.numeric
    train, val = frame.take(np.arange(300)), frame.take(np.arange(300, 400))
    settings = params.train.model_copy(update={"max_epochs": 1, "batch_size": 128, "mlp": (8,), "d": 8})
    item_table = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    scorer, _ = fit_neural(
        train, val, spec, items["item_id"].tolist(), item_table, settings, 4, use_text=True
    )
    assert "toy_odd_price" in scorer.pre.mean
    trees = LightGBMModel(rounds=5).fit(train, val, feature_spec(list(frame.df.columns), "lightgbm"))
    assert "toy_odd_price" in trees.booster.feature_name()

    # evaluation: a fresh frame gets it from derive() and the scorer reads it
    test, _ = _frame(seed=1)
    derive(test)
    with_toy = scorer.predict(test)
    test.df["toy_odd_price"] = 1.0 - test.df["toy_odd_price"]
    assert not np.allclose(with_toy, scorer.predict(test)), "the model ignores the toy input"
    test.df["toy_odd_price"] = 1.0 - test.df["toy_odd_price"]

    # serving: the fast path computes it from item parts and the request's values
    features = SimpleNamespace(values=items.set_index("item_id", drop=False), version=1)
    fast = FastScorer(scorer, features)
    assert "toy_odd_price" in fast.derived
    rows = np.array([0, 3, 7, 11, 19])
    user = {"recent_categories": ["a > x", "b > z", "a > x"], "user_price_pref": 20.0, "recent_items": ["i1"]}
    lookup = Lookup(items.iloc[rows].reset_index(drop=True), user, True, None)
    q_vec = np.zeros(8, np.float32)
    got = fast.inputs(rows, lookup, q_vec, "acme boots", item_table[rows])
    request = items.iloc[rows].reset_index(drop=True)
    request["recent_categories"] = pd.Series([user["recent_categories"]] * len(rows), dtype=object)
    request["recent_items"] = pd.Series([user["recent_items"]] * len(rows), dtype=object)
    request["user_price_pref"], request["query"] = 20.0, "acme boots"
    vectors = {"query_embedding": np.zeros((len(rows), 8), np.float32), "item_embedding": item_table[rows]}
    request_frame = derive(Frame(request, vectors))
    j = scorer.pre.spec.numeric.index("toy_odd_price")
    expected = scorer.pre.transform(request_frame, scorer.history_length)["num"]
    np.testing.assert_allclose(got["num"][:, j], expected[:, j], atol=1e-6)

    # explanations: it is blanked with its group, on the frame and on the fast path's arrays
    big, names = explain.occluded(request_frame)
    at = names.index("price") + 1
    assert big.df["toy_odd_price"].iloc[at * len(rows) : (at + 1) * len(rows)].isna().all()
    _, drops = fast.occlusion(got)
    assert "price" in drops


def test_without_the_declaration_the_toy_input_is_unknown():
    frame, _ = _frame()
    derive(frame)
    assert "toy_odd_price" not in frame.df.columns
    assert "toy_odd_price" not in feature_spec([*frame.df.columns, "toy_odd_price"]).numeric
