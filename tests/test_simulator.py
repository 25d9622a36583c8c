"""The simulator's promised properties, checked on the data it writes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from shoprank.config import Profile
from shoprank.data.schema import TABLES, check_table
from shoprank.data.simulator import simulate
from shoprank.data.simulator.legacy import plackett_luce, tokenize
from shoprank.evaluation.metrics import auc, expected_auc
from shoprank.evaluation.oracle import expected_clicks


@pytest.fixture(scope="module")
def small_sim(params):
    """A marketplace with enough clicks for the statistical checks (about a second)."""
    s = params.simulate
    profiles = {**s.profiles, "small": Profile(n_items=1200, n_users=600, n_requests=6000, days=21)}
    return simulate(s.model_copy(update={"profiles": profiles}), "small")


def joined(sim) -> pd.DataFrame:
    """Impressions with their truth: attractiveness, p_click, request intent and target."""
    imp = sim.tables["impressions"]
    cand = sim.truth["candidates"][["request_id", "item_id", "attractiveness"]]
    out = imp.merge(cand, on=["request_id", "item_id"], validate="one_to_one")
    out["p_click"] = sim.truth["impressions"]["p_click"].to_numpy()
    return out.merge(sim.truth["requests"][["request_id", "intent", "target_product_type"]], on="request_id")


def test_every_table_conforms_to_the_contract(tiny_sim):
    for name, df in tiny_sim.tables.items():
        check_table(df, TABLES[name])
    assert set(tiny_sim.tables) == {"catalog", "users", "impressions"}


def test_same_seed_same_output_other_seed_differs(params, tiny_sim):
    again = simulate(params.simulate, "tiny")
    for name, df in tiny_sim.tables.items():
        pd.testing.assert_frame_equal(df, again.tables[name])
    pd.testing.assert_frame_equal(tiny_sim.truth["candidates"], again.truth["candidates"])
    other = simulate(params.simulate, "tiny", seed=params.simulate.seed + 1)
    assert not other.tables["impressions"]["item_id"].equals(tiny_sim.tables["impressions"]["item_id"])


def test_attractiveness_is_the_sigmoid_of_the_named_utility_terms(params, monkeypatch):
    from shoprank.data.simulator import clicks

    captured = []
    real = clicks.utility_terms

    def capture(*args, **kwargs):
        terms = real(*args, **kwargs)
        captured.append(terms)
        return terms

    monkeypatch.setattr(clicks, "utility_terms", capture)
    c = params.simulate.clicks.model_copy(update={"noise": 0.0})  # no noise: the terms are everything
    sim = simulate(params.simulate.model_copy(update={"clicks": c}), "tiny")
    assert set(captured[0]) == {
        "intent",
        "match",
        "attribute",
        "affinity",
        "brand",
        "price",
        "quality",
        "novelty",
    }
    utility = c.base_utility + sum(
        np.concatenate([np.broadcast_to(t[k], t["match"].shape) for t in captured]).ravel()
        for k in captured[0]
    )
    expected = 1 / (1 + np.exp(-utility))
    np.testing.assert_allclose(sim.truth["candidates"]["attractiveness"].to_numpy(), expected, rtol=1e-12)
    assert captured[0]["quality"].std() > 0.1 and captured[0]["match"].max() > 0  # real terms, not zeros


def test_clicks_fall_with_position(small_sim):
    ctr = small_sim.tables["impressions"].groupby("position")["clicked"].mean().to_numpy()
    assert ctr[0] > ctr[4] > ctr[-1]
    assert ctr[:3].mean() > 2 * ctr[10:].mean()
    # the position effect itself, not only a better legacy ranking at the top: clicks per
    # unit of true attractiveness follow the decreasing examination curve
    j = joined(small_sim)
    per_unit = j.groupby("position")["clicked"].sum() / j.groupby("position")["attractiveness"].sum()
    exam = small_sim.truth["examination"]["examination"].to_numpy()
    assert np.all(np.diff(exam) < 0)
    assert per_unit.iloc[0] > per_unit.iloc[4] > per_unit.iloc[15:].mean()
    np.testing.assert_allclose(per_unit.to_numpy()[:5], exam[:5], rtol=0.15)


def test_attractive_and_preferred_items_are_clicked_more(small_sim):
    j = joined(small_sim)
    top_pos = j[j["position"] <= 5]
    q = top_pos["attractiveness"].quantile([0.25, 0.75]).to_numpy()
    assert top_pos.loc[top_pos["attractiveness"] >= q[1], "clicked"].mean() > (
        2 * top_pos.loc[top_pos["attractiveness"] <= q[0], "clicked"].mean()
    )

    # items of the category the user prefers most get more clicks, position held fixed
    users = small_sim.truth["users"].set_index("user_id")
    pref_cols = [c for c in users.columns if c.startswith("pref_start:")]
    favourite = users[pref_cols].idxmax(axis=1).str.removeprefix("pref_start:")
    top_cat = small_sim.tables["catalog"].set_index("item_id")["category"].str.split(" > ").str[0]
    recs = j[(j["intent"] == "recommend") & (j["position"] <= 5)]
    liked = recs["user_id"].map(favourite).to_numpy() == recs["item_id"].map(top_cat).to_numpy()
    assert recs.loc[liked, "clicked"].mean() > 1.5 * recs.loc[~liked, "clicked"].mean()

    # items of the product type the query asks for get more clicks than the rest
    item_type = small_sim.truth["items"].set_index("item_id")["product_type"]
    search = j[j["intent"] == "buy"]
    match = search["item_id"].map(item_type).to_numpy() == search["target_product_type"].to_numpy()
    assert search.loc[match, "clicked"].mean() > 2 * search.loc[~match, "clicked"].mean()


def test_queries_use_synonyms_absent_from_relevant_titles(small_sim):
    req = small_sim.truth["requests"]
    items = small_sim.truth["items"][["item_id", "product_type"]].merge(
        small_sim.tables["catalog"][["item_id", "title"]], on="item_id"
    )
    title_words = items.groupby("product_type")["title"].agg(lambda t: set(tokenize(" ".join(t))))
    named = req[req["query_name"] != ""]
    disjoint = [
        not (set(tokenize(q)) & title_words[pt])
        for q, pt in zip(named["query_name"], named["target_product_type"], strict=True)
    ]
    share = float(np.mean(disjoint))
    assert 0.2 < share < 0.9, f"{share:.2f} of product-type phrases share no word with any relevant title"
    assert (req["query"] == "").mean() == pytest.approx(
        1 - small_sim.truth["requests"]["intent"].ne("recommend").mean()
    )


def test_new_items_launch_inside_the_window_and_are_never_shown_before(small_sim):
    cat, imp = small_sim.tables["catalog"], small_sim.tables["impressions"]
    start, end = imp["ts"].min(), imp["ts"].max()
    new = cat["created_at"] > start
    assert 0.08 < new.mean() < 0.25
    assert cat.loc[new, "created_at"].max() <= end
    shown = imp.merge(cat[["item_id", "created_at"]], on="item_id")
    assert (shown["ts"] >= shown["created_at"]).all()
    assert shown["item_id"].isin(cat.loc[new, "item_id"]).mean() > 0.005  # new items do get shown
    assert (
        small_sim.truth["items"].set_index("item_id").loc[cat.loc[new, "item_id"], "past_sales"].eq(0).all()
    )


def test_catalog_attributes_are_incomplete_but_truth_is_complete(tiny_sim):
    observed = tiny_sim.tables["catalog"]["attributes"].map(json.loads)
    missing_colour = observed.map(lambda a: "colour" not in a).mean()
    assert 0.15 < missing_colour < 0.45  # missing_attribute_rate is 0.3
    assert tiny_sim.truth["items"]["colour"].notna().all()


def test_propensities_match_the_logging_policy(params, tiny_sim):
    """Logged propensities agree with a long Monte Carlo run of the same legacy policy."""
    imp = tiny_sim.tables["impressions"]
    assert imp["propensity"].between(0, 1, inclusive="right").all()
    cand = tiny_sim.truth["candidates"]
    n_cand, page = params.simulate.market.candidates_per_request, params.simulate.market.page_size
    scores = cand["legacy_score"].to_numpy().reshape(-1, n_cand)[:30]
    shown_pos = cand["position"].to_numpy().reshape(-1, n_cand)[:30]
    shown = np.argsort(np.where(shown_pos > 0, shown_pos, page + 1), axis=1)[:, :page]
    rng = np.random.default_rng(7)
    draws = plackett_luce(
        np.repeat(scores[:, None, :], 4000, axis=1), params.simulate.legacy.temperature, page, rng
    )
    reference = (draws == shown[:, None, :]).mean(axis=1).ravel()
    logged = imp["propensity"].to_numpy()[: 30 * page]
    assert np.corrcoef(reference, logged)[0, 1] > 0.8
    assert np.abs(reference - logged).mean() < 0.02
    # a deterministic policy would make propensities 1: the logging policy explores
    assert imp["propensity"].median() < 0.5


def test_legacy_beats_random_and_oracle_beats_legacy(small_sim):
    cand = small_sim.truth["candidates"]
    exam = small_sim.truth["examination"]["examination"].to_numpy()
    rng = np.random.default_rng(0)
    oracle = expected_clicks(cand, cand["attractiveness"].to_numpy(), exam)
    legacy = expected_clicks(cand, cand["legacy_score"].to_numpy(), exam)
    random = expected_clicks(cand, rng.random(len(cand)), exam)
    assert oracle > legacy > random
    assert oracle > 1.2 * legacy  # room for a better ranker


def test_bayes_auc_is_what_true_probabilities_achieve(tiny_sim):
    s = tiny_sim.summary
    assert 0.6 < s["bayes_auc"] < 1
    assert s["bayes_auc_expected"] == pytest.approx(s["bayes_auc"], abs=0.03)
    assert sum(s["rows"].values()) == sum(len(df) for df in tiny_sim.tables.values())


def test_auc_and_expected_auc_match_brute_force():
    rng = np.random.default_rng(1)
    p = np.round(rng.random(40), 1)  # ties on purpose
    y = (rng.random(40) < p).astype(int)
    pos, neg = p[y == 1], p[y == 0]
    brute = np.mean([(a > b) + 0.5 * (a == b) for a in pos for b in neg])
    assert auc(y, p) == pytest.approx(brute)
    num = den = 0.0
    for i in range(len(p)):
        for k in range(len(p)):
            if i != k:
                w = p[i] * (1 - p[k])
                num += w * ((p[i] > p[k]) + 0.5 * (p[i] == p[k]))
                den += w
    assert expected_auc(p) == pytest.approx(num / den)
    assert np.isnan(auc(np.ones(3), np.arange(3)))


def test_expected_clicks_by_hand():
    cand = pd.DataFrame(
        {"request_id": ["a", "a", "a", "b", "b"], "attractiveness": [0.1, 0.5, 0.3, 0.2, 0.4]}
    )
    exam = np.array([1.0, 0.5])
    # request a ranked by score: 0.5, 0.3 -> 0.5 + 0.15; request b: 0.4, 0.2 -> 0.4 + 0.1
    assert expected_clicks(cand, np.array([0, 3, 2, 1, 2]), exam, k=2) == pytest.approx((0.65 + 0.5) / 2)


def test_truth_holds_every_candidates_purchase_probability(tiny_sim):
    """P(purchase | click) of each retrieved candidate: the logged purchases follow it."""
    cand = tiny_sim.truth["candidates"]
    assert cand["p_purchase"].between(0, 1).all()
    imp = tiny_sim.tables["impressions"]
    shown = imp.merge(cand, on=["request_id", "item_id", "position"])
    clicked = shown[shown["clicked"] == 1]
    assert len(shown) == len(imp) and len(clicked) > 100
    # the purchase rate of the clicks is their mean true probability, up to sampling noise
    se = np.sqrt((clicked["p_purchase"] * (1 - clicked["p_purchase"])).sum()) / len(clicked)
    assert abs(clicked["purchased"].mean() - clicked["p_purchase"].mean()) < 4 * se
