"""Re-ranking, retrieval and explanations: the serving path's functions on arrays and frames.

No model and no server: stand-in scores and a stand-in scorer.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from shoprank.config import load_params
from shoprank.config_experiment import Experiment
from shoprank.config_serve import Serve
from shoprank.inputs.frame import Frame
from shoprank.ranking.experiment import OnlineExperiment
from shoprank.ranking.explain import impacts, reasons
from shoprank.ranking.rerank import diverse_order, exploration_slots, rerank
from shoprank.retrieval import HybridRetriever


def test_diverse_order_is_score_order_without_diversity_and_spreads_categories_with_it():
    scores = np.array([0.9, 0.8, 0.7, 0.6])
    groups = np.array(["a", "a", "a", "b"])
    assert diverse_order(scores, groups, 3, 0.0).tolist() == [0, 1, 2]
    assert diverse_order(scores, groups, 3, 0.5).tolist() == [0, 3, 1]  # b (0.6) beats a's second (0.4)


def test_additive_diversity_swaps_near_ties_only():
    scores = np.array([0.30, 0.29, 0.28, 0.10, 0.279])
    groups = np.array(["a", "a", "a", "b", "c"])
    # 0.01 per shown group-mate: c's 0.279 overtakes a's third (0.28 - 0.02), b's 0.10 never does
    assert diverse_order(scores, groups, 4, 0.01, additive=True).tolist() == [0, 1, 4, 2]
    # the multiplicative discount at a usual setting lets the far worse b in
    assert 3 in diverse_order(scores, groups, 4, 0.5).tolist()


def page_maker(categories: list[str], settings: Serve) -> OnlineExperiment:
    """The service's page step (no experiment) over a stand-in catalogue of ``categories``."""
    catalog = SimpleNamespace(category=np.array(categories), is_new=np.zeros(len(categories), bool))
    return OnlineExperiment(Experiment(), Path("."), catalog, settings, None, lambda _: None)  # type: ignore[arg-type, return-value]


def test_a_search_page_keeps_the_requested_category_and_a_feed_page_spreads_categories():
    # the six best-scored candidates are all the product type the query asks for
    categories = ["shoes"] * 6 + ["bags", "hats", "belts", "socks"]
    scored = SimpleNamespace(scores=np.linspace(0.5, 0.3, 10), rows=np.arange(10))
    pages = page_maker(categories, load_params(Path(__file__).resolve().parents[1] / "params.yaml").serve)
    search = pages.arrange(scored, 5, np.random.default_rng(0))  # type: ignore[arg-type]
    assert search.order.tolist() == [0, 1, 2, 3, 4]
    feed = pages.arrange(scored, 5, np.random.default_rng(0), feed=True)  # type: ignore[arg-type]
    assert len({categories[i] for i in feed.order.tolist()}) > 1
    assert feed.propensity.tolist() == [1.0] * 5  # no new items: every slot is certain
    spread = page_maker(categories, Serve(search_diversity=0.5, feed_diversity=0.0))
    assert len({categories[i] for i in spread.arrange(scored, 5, np.random.default_rng(0)).order}) > 1  # type: ignore[arg-type]
    flat = spread.arrange(scored, 5, np.random.default_rng(0), feed=True)  # type: ignore[arg-type]
    assert flat.order.tolist() == [0, 1, 2, 3, 4]


def test_exploration_slots_are_spread_and_filled_with_new_items():
    assert exploration_slots(10, 0.0) == []
    assert exploration_slots(10, 0.2) == [3, 7]
    scores = np.linspace(1.0, 0.1, 20)
    is_new = np.zeros(20, dtype=bool)
    is_new[[15, 18]] = True  # new items far down the score order
    order, explored, propensity = rerank(
        scores, np.array(["x"] * 20), is_new, 10, 0.0, 0.2, np.random.default_rng(0)
    )
    assert len(order) == 10 and len(set(order.tolist())) == 10
    assert explored.tolist().count(True) == 2
    assert set(order[explored].tolist()) == {15, 18}
    assert order[~explored].tolist() == list(range(8))  # exploitation keeps the score order
    assert propensity[~explored].tolist() == [1.0] * 8
    # the first draw picks item 15 or 18 in proportion to their scores; the second is then certain
    first = order[explored][0]
    assert propensity[explored].tolist() == pytest.approx([scores[first] / scores[[15, 18]].sum(), 1.0])


def test_logged_exploration_probabilities_are_the_draws_frequencies():
    scores = np.array([0.9, 0.8, 0.5, 0.3, 0.2])
    is_new = np.array([0, 0, 1, 1, 1], bool)
    seen: dict[int, int] = {}
    logged: dict[int, float] = {}
    for seed in range(4000):
        order, explored, propensity = rerank(
            scores, np.zeros(5), is_new, 3, 0.0, 0.34, np.random.default_rng(seed)
        )
        (slot,) = np.flatnonzero(explored)
        item = int(order[slot])
        seen[item] = seen.get(item, 0) + 1
        logged[item] = float(propensity[slot])
    assert set(logged) == {3, 4}  # item 2, new too, is on the page already
    for item, p in logged.items():  # one draw: 0.3 / 0.5 and 0.2 / 0.5
        assert seen[item] / 4000 == pytest.approx(p, abs=0.03)


def test_hybrid_retriever_fuses_bm25_and_neighbours_and_respects_the_mask(tmp_path):
    docs = ["red wool scarf", "blue cotton shirt", "red cotton shirt", "green tent", "camping stove"]
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(5, 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    HybridRetriever.build(docs, vecs).save(tmp_path)
    r = HybridRetriever.load(tmp_path)
    got = r.retrieve("red shirt", vecs[3], 5)
    assert got.rows[0] == 2  # best lexical match, and fused with the neighbour side
    assert 3 in got.rows.tolist()  # the nearest neighbour of the query vector
    assert got.cosine[got.rows.tolist().index(3)] == pytest.approx(1.0, abs=1e-5)
    mask = np.array([False, True, False, True, True])
    assert set(r.retrieve("red shirt", vecs[3], 5, mask).rows.tolist()) <= {1, 3, 4}
    assert len(r.retrieve("zzz", vecs[0], 5, np.zeros(5, dtype=bool)).rows) == 0


class CtrScorer:
    """A stand-in model whose score is driven by the item's CTR."""

    def predict(self, frame: Frame, with_position: bool = False) -> np.ndarray:
        return np.nan_to_num(frame.df["item_ctr_28d"].to_numpy(float), nan=0.01) + 0.01


def test_explanations_name_the_features_that_drove_the_score():
    df = pd.DataFrame(
        {
            "item_ctr_28d": [0.2, 0.0],
            "item_impressions_28d": [100, 3],
            "brand": ["b", "b"],
            "price": [9.0, 9.0],
        }
    )
    frame = Frame(df, {"query_embedding": np.ones((2, 4), np.float32)})
    base, drops = impacts(CtrScorer(), frame)
    assert base.tolist() == pytest.approx([0.21, 0.01])
    why = reasons(frame, drops, np.array([0.5, 0.5]))
    assert why[0][0]["feature"] == "popularity" and "20.0% click rate" in why[0][0]["text"]
    assert why[1] == []  # nothing drove the second item's score


def test_objective_orders_an_expensive_likely_bought_item_above_a_cheap_one():
    from shoprank.models.objective import objective_scores

    # item 0: cheap, clicked more often; item 1: expensive, bought more often once clicked
    p_click, p_buy, price = np.array([0.3, 0.2]), np.array([0.2, 0.4]), np.array([10.0, 200.0])
    assert np.argmax(objective_scores("clicks", p_click, p_buy, price)) == 0
    assert np.argmax(objective_scores("purchases", p_click, p_buy, price)) == 1  # 0.06 < 0.08
    assert np.argmax(objective_scores("revenue", p_click, p_buy, price)) == 1
    # without a purchase head every click is as likely to buy: purchases order as clicks
    assert np.argmax(objective_scores("purchases", p_click, None, price)) == 0
    with pytest.raises(ValueError, match="unknown objective"):
        objective_scores("margin", p_click, p_buy, price)
    # the re-ranking policy sits on top of the objective's scores
    order, _, _ = rerank(
        objective_scores("revenue", p_click, p_buy, price),
        np.array(["a", "b"]),
        np.zeros(2),
        2,
        0.15,
        0.0,
        np.random.default_rng(0),
    )
    assert order.tolist() == [1, 0]
