"""The query-understanding inputs: hand-computed values, the fit's split, and serving's parity."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from shoprank.inputs.apply import derive
from shoprank.inputs.frame import Frame
from shoprank.inputs.lexical import Lexicon, words
from shoprank.inputs.understood import UNDERSTOOD, QueryReader
from shoprank.models.preprocess import feature_spec
from shoprank.models.query_category import QueryCategoryHead
from tests.test_inputs import _frame

NEW = ("query_category_prob", "query_top_prob", "query_bm25", "query_word_overlap")


class FixedProbabilities:
    """A fitted classifier's stand-in: the same probabilities for every row."""

    def __init__(self, classes: list[str], probs: list[float]):
        self.classes_ = np.array(classes, dtype=object)
        self.classes = classes
        self.probs = np.array(probs)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.tile(self.probs, (len(x), 1))


def _head() -> QueryCategoryHead:
    model = FixedProbabilities(["a > x", "a > y", "b > z"], [0.5, 0.2, 0.3])
    return QueryCategoryHead(model=model).indexed()  # type: ignore[arg-type]


ITEMS = pd.DataFrame(
    {
        "item_id": ["p", "q", "r"],
        "title": ["Red socks", "Blue wool socks", "Green hat"],
        "description": ["", "", ""],
        "category": ["a > x", "a > y", "c > w"],
    }
)


def test_lexicon_gives_bm25_and_word_overlap_computed_by_hand():
    lexicon = Lexicon.of(ITEMS)
    terms = lexicon.query_terms("red wool socks for the feet")  # "for", "the": stop words
    assert [w for w, _ in terms] == ["red", "wool", "socks", "feet"]
    mean = 7 / 3  # words per item: 2, 3, 2
    idf_1 = math.log(1 + (3 - 1 + 0.5) / (1 + 0.5))  # in one item of three
    idf_2 = math.log(1 + (3 - 2 + 0.5) / (2 + 0.5))  # in two

    def tf1(length: int) -> float:  # BM25's term weight of a word found once
        return 2.5 / (1 + 1.5 * (0.25 + 0.75 * length / mean))

    assert lexicon.bm25(terms, "p") == pytest.approx(idf_1 * tf1(2) + idf_2 * tf1(2))
    assert lexicon.bm25(terms, "q") == pytest.approx(idf_1 * tf1(3) + idf_2 * tf1(3))
    assert lexicon.bm25(terms, "r") == 0.0
    assert lexicon.overlap(terms, "p") == pytest.approx(2 / 4)
    assert lexicon.overlap(terms, "q") == pytest.approx(2 / 4)
    assert lexicon.overlap(terms, "r") == 0.0
    assert math.isnan(lexicon.bm25(terms, "unknown item"))
    assert words("Wool-Socks, 2 pairs") == ("wool", "socks", "2", "pairs")


def test_each_input_equals_its_hand_computed_value_and_is_neutral_without_query_or_head():
    intent = FixedProbabilities(["buy", "learn"], [0.3, 0.7])
    reader = QueryReader(_head(), intent, Lexicon.of(ITEMS))
    df = ITEMS.iloc[[0, 1, 2, 0]].reset_index(drop=True)
    df["query"] = ["red socks", "red socks", "red socks", ""]  # the last: a recommendation feed
    frame = derive(Frame(df, {"query_embedding": np.ones((4, 3), np.float32)}), reader=reader)
    out = frame.df
    np.testing.assert_allclose(out["query_category_prob"].to_numpy()[:3], [0.5, 0.2, 0.0])
    np.testing.assert_allclose(out["query_top_prob"].to_numpy()[:3], [0.7, 0.7, 0.0])
    np.testing.assert_allclose(out["query_word_overlap"].to_numpy()[:3], [1.0, 0.5, 0.0])
    lex = Lexicon.of(ITEMS)
    terms = lex.query_terms("red socks")
    np.testing.assert_allclose(out["query_bm25"].to_numpy()[:3], [lex.bm25(terms, i) for i in "pqr"])
    assert out["query_bm25"].iloc[0] > out["query_bm25"].iloc[1] > 0
    assert list(out["query_intent"]) == ["learn", "learn", "learn", None]
    assert out.loc[3, list(NEW)].isna().all()  # no query: every input neutral (NaN)

    # no heads (an imported log without them): the category inputs are NaN, the words still match
    bare = derive(Frame(df[[*ITEMS.columns, "query"]].copy(), {}), reader=QueryReader(lexicon=lex)).df
    assert bare[["query_category_prob", "query_top_prob"]].isna().all().all()
    assert bare["query_intent"].isna().all()
    np.testing.assert_allclose(bare["query_word_overlap"].to_numpy()[:3], [1.0, 0.5, 0.0])


def test_top_category_probability_is_the_sum_of_its_full_categories():
    rng = np.random.default_rng(0)
    labels = np.array(["a > x", "a > y", "b > z"] * 20, dtype=object)
    centres = {"a > x": 0, "a > y": 1, "b > z": 2}
    x = np.eye(3)[[centres[v] for v in labels]] + rng.normal(0, 0.1, (60, 3))
    head = QueryCategoryHead().fit(x, labels)
    full = head.predict_proba(x[:5])
    np.testing.assert_allclose(head.top_proba(full), np.c_[full[:, 0] + full[:, 1], full[:, 2]])
    assert head.accuracy(x, labels)["accuracy"] == 1.0


def _training_set(path, n_requests: int = 100) -> None:
    """Requests a day apart; the first 80 click 'a > x' for 'socks', the last 20 'b > z'."""
    rows = []
    for r in range(n_requests):
        late = r >= 80
        for pos in range(2):
            rows.append(
                {
                    "request_id": f"r{r:03d}",
                    "event_timestamp": pd.Timestamp("2026-01-01", tz="UTC") + pd.Timedelta(hours=r),
                    "query": "socks" if r % 2 else "hats",
                    "item_id": f"i{pos}",
                    "clicked": int(pos == 0),
                    "category": ("b > z" if late else "a > x") if r % 2 else "c > w",
                    "query_embedding": [1.0, 0.0] if r % 2 else [0.0, 1.0],
                }
            )
    pq.write_table(pa.Table.from_pylist(rows), path)


def test_the_head_learns_from_the_training_splits_clicks_only(params, tmp_path):
    from shoprank.training.query_category import fit_query_category

    (tmp_path / "training").mkdir()
    _training_set(tmp_path / "training" / "training_set.parquet")
    paths = params.paths.model_copy(update={"training": str(tmp_path / "training")})
    train = params.train.model_copy(update={"val_share": 0.1, "test_share": 0.1})
    understand = params.understand.model_copy(update={"category_min_clicks": 10})
    p = params.model_copy(update={"paths": paths, "train": train, "understand": understand})
    head, report = fit_query_category(p)
    assert head is not None and report["trained"]
    assert head.classes == ["a > x", "c > w"]  # "b > z" is clicked only in the validation and test days
    assert report["validation"]["rows"] == 10

    few = p.model_copy(update={"understand": understand.model_copy(update={"category_min_clicks": 1000})})
    head, report = fit_query_category(few)
    assert head is None and "category_min_clicks" in report["reason"]


def test_fast_path_equals_the_frame_path_for_the_new_inputs(params):
    from shoprank.models.baselines import LightGBMModel
    from shoprank.ranking.fastpath import FastScorer
    from shoprank.ranking.features import Lookup
    from shoprank.training.train import fit_neural

    frame, items = _frame()
    items["title"] = [f"{b} boots {c}" for b, c in zip(items["brand"], items["category"], strict=True)]
    items["description"] = "warm"
    cats = sorted(set(items["category"]))
    head = QueryCategoryHead(model=FixedProbabilities(cats, [0.6, 0.3, 0.1])).indexed()  # type: ignore[arg-type]
    reader = QueryReader(head, FixedProbabilities(["buy", "learn"], [0.8, 0.2]), Lexicon.of(items))
    derive(frame, reader=reader)
    spec = feature_spec(list(frame.df.columns), "bert_ctr")
    assert set(NEW) <= set(spec.numeric) and "query_intent" in spec.categorical
    assert set(NEW) <= set(feature_spec(list(frame.df.columns), "lightgbm").numeric)
    train, val = frame.take(np.arange(300)), frame.take(np.arange(300, 400))
    settings = params.train.model_copy(update={"max_epochs": 1, "batch_size": 128, "mlp": (8,), "d": 8})
    table = np.random.default_rng(1).normal(size=(40, 8)).astype(np.float32)
    scorer, _ = fit_neural(train, val, spec, items["item_id"].tolist(), table, settings, 4, use_text=True)
    trees = LightGBMModel(rounds=5).fit(train, val, feature_spec(list(frame.df.columns), "lightgbm"))
    assert {"query_bm25", "query_category_prob"} <= set(trees.booster.feature_name())

    features = SimpleNamespace(
        # the served item table holds no id column: its rows are the items of ``item_ids``
        values=items.drop(columns=["item_id"]),
        version=1,
        item_ids=list(items["item_id"]),
    )
    fast = FastScorer(scorer, features)
    rows = np.array([0, 3, 7, 11, 19])
    for query in ("acme boots", ""):
        q_vec = np.ones(8, np.float32)
        user = {"recent_categories": ["a > x"], "user_price_pref": 20.0, "recent_items": ["i1"]}
        user[UNDERSTOOD] = reader.understood(query, q_vec)  # what the service adds per request
        lookup = Lookup(items.iloc[rows].reset_index(drop=True), user, True, None)
        got = fast.inputs(rows, lookup, q_vec, query, table[rows])
        request = items.iloc[rows].reset_index(drop=True)
        request["recent_categories"] = pd.Series([user["recent_categories"]] * len(rows), dtype=object)
        request["recent_items"] = pd.Series([user["recent_items"]] * len(rows), dtype=object)
        request["user_price_pref"], request["query"] = 20.0, query
        vectors = {"query_embedding": np.tile(q_vec, (len(rows), 1)), "item_embedding": table[rows]}
        want = scorer.pre.transform(derive(Frame(request, vectors), reader=reader), scorer.history_length)
        for key in ("num", "cat"):
            np.testing.assert_allclose(got[key], want[key], atol=1e-6, err_msg=f"{key} for {query!r}")
        crossed = fast.cross_arrays(rows, lookup, query, list(NEW))
        if query:
            assert crossed["query_bm25"].max() > 0 and (crossed["query_category_prob"] > 0).all()
        else:
            assert all(np.isnan(v).all() for v in crossed.values())
