"""Recommendation feeds of the in-process Ranker on the packaged tiny champion (``serving_env``).

Candidates from the shopper's clicks (co-clicked and similar items), popular and new items;
scored as the training set's feed impressions; served, logged and clicked like a search.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from shoprank.feedback import FeedbackLog
from shoprank.retrieval.history import retrieve

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(scope="module")
def ranker(serving_env):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    params = load_params(serving_env.params_file)
    settings = params.serve.model_copy(update={"feature_ttl_s": 600.0})  # no refresh during the tests
    ranker = Ranker(serving_env.bundle, params, settings=settings)
    yield ranker
    ranker.stop_refresh()


@pytest.fixture(scope="module")
def clicker(ranker) -> str:
    """The packaged user with the most recent clicks (the online store has the same history), by pseudonym."""
    users = ranker.features.users
    return str(users["recent_items"].map(lambda v: 0 if v is None else len(v)).idxmax())


@pytest.fixture(scope="module")
def clicker_id(clicker, serving_env) -> str:
    """The clicker's own id, what a request sends."""
    return serving_env.user_id(clicker)


def test_a_request_names_the_shopper_the_training_data_named(ranker, clicker, clicker_id):
    assert clicker.startswith("ps_") and clicker_id.startswith("user_")
    assert ranker.shopper(clicker_id) == clicker
    assert ranker.recommend(clicker_id, k=5)["user_known"] is True  # personalised: the same shopper
    assert ranker.recommend(clicker, k=5)["user_known"] is False  # a pseudonym is not an id: hashed again


def test_a_shoppers_candidates_are_the_co_clicked_and_similar_items_of_their_clicks(ranker, clicker):
    from shoprank.ranking import recommend

    who, known, fallback = recommend.shopper(ranker, clicker)
    recent = list(ranker.features.users.loc[clicker, "recent_items"])
    assert known and fallback is None
    assert ranker.item_ids[who.clicked].tolist() == list(dict.fromkeys(recent))
    assert who.history.tolist() == who.clicked[: ranker.settings.feed_history].tolist()
    got = retrieve(
        ranker.feed, who, ranker.settings.retrieve_n, recommend.allowed_items(ranker, who, None, True)
    )
    sources = dict(zip(got.rows.tolist(), got.sources, strict=True))
    assert not set(who.clicked.tolist()) & set(sources)  # what they clicked is left out
    latest = int(who.history[0])
    co_rows, _ = ranker.feed.co_clicks.of(latest)
    first_co = next(r for r in co_rows.tolist() if r not in who.clicked)
    assert "co_clicked" in sources[first_co]
    cosine = ranker.vectors @ ranker.vectors[latest]  # the nearest item by text, found by brute force
    cosine[who.clicked] = -np.inf
    nearest = np.flatnonzero(cosine >= cosine.max() - 1e-5)  # a float tie may order either way
    assert any("similar" in sources.get(int(r), ()) for r in nearest)
    assert {"co_clicked", "similar", "popular", "new"} == {s for found in got.sources for s in found}


def test_a_feed_is_scored_explained_logged_and_clicked_like_a_search(
    ranker, clicker, clicker_id, serving_env, monkeypatch
):
    # the shopper's day so far moves every next score (test_serving_session.py): held still here
    monkeypatch.setattr(ranker.scoring, "day", None)
    body = ranker.recommend(clicker_id, k=12)
    results = body["results"]
    assert body["user_known"] is True and body["history"] > 0 and body["degraded"] is False
    assert body["query_vector"] is None and body["candidates"] >= 12
    assert [x["position"] for x in results] == list(range(1, 13))
    assert all(0 < x["score"] < 1 and x["retrieval"]["sources"] for x in results)
    assert any(x["reasons"] for x in results)
    assert all({"feature", "impact", "text"} <= set(r) for x in results for r in x["reasons"])
    shown = [x["item_id"] for x in results]
    assert not set(shown) & set(ranker.features.users.loc[clicker, "recent_items"])
    # the champion's scores of a feed: those of `rank` with no query, item by item
    ranked = ranker.rank("", clicker_id, shown)
    by_rank = {x["item_id"]: x["score"] for x in ranked["results"]}
    # equal up to float32 sums over a different batch and the responses' 6-digit rounding
    assert all(x["score"] == pytest.approx(by_rank[x["item_id"]], abs=2e-6) for x in results)

    ranker.served.appender.flush(5.0)
    log = FeedbackLog(serving_env.feedback_dir).read()
    served = log[log["request_id"] == body["request_id"]].sort_values("position")
    assert served["item_id"].tolist() == shown and (served["event"] == "served").all()
    assert (served["query"] == "").all() and (served["user_id"] == clicker).all()
    assert served["score"].round(6).tolist() == [x["score"] for x in results]
    assert (served["model_version"] == ranker.version).all()
    click = ranker.record_feedback(body["request_id"], shown[3], "click", results[3]["feedback_token"])
    assert click["verified"] is True
    log = FeedbackLog(serving_env.feedback_dir).read()
    row = log[(log["request_id"] == body["request_id"]) & (log["event"] == "click")].iloc[0]
    assert (row["item_id"], row["position"], row["query"], row["user_id"]) == (shown[3], 4, "", clicker)


def test_a_feed_has_the_inputs_of_the_training_sets_feed_impressions(
    ranker, clicker, clicker_id, serving_env
):
    """Training holds a feed as query "", query id "", is_search 0 and no query embedding."""
    from shoprank.ranking.recommend import FEED_QUERY

    table = pq.read_table(Path(serving_env.raw["paths"]["training"]) / "training_set.parquet")
    feeds = table.filter(pc.equal(table["is_search"], 0))
    assert feeds.num_rows > 0
    assert set(feeds["query"].to_pylist()) == {""} and set(feeds["query_id"].to_pylist()) == {""}
    assert feeds["query_embedding"].null_count == feeds.num_rows
    rows = ranker.rows_of([x["item_id"] for x in ranker.recommend(clicker_id, k=5)["results"]])
    s = ranker.score(rows, FEED_QUERY, clicker, "r_" + "0" * 32, {})
    frame = ranker.frame_of(s)
    assert set(frame.df["query"]) == {""} and set(frame.df["query_id"]) == {""}
    assert set(frame.df["is_search"]) == {0}
    assert not np.asarray(frame.vectors["query_embedding"]).any()  # a null embedding is zeros in training
    inputs = ranker.scorer.pre.transform(frame, ranker.scorer.history_length)
    assert not np.asarray(inputs["q_emb"]).any() and not inputs["has_query"].any()


def test_a_shopper_without_history_gets_popular_and_new_items(ranker):
    body = ranker.recommend("user_never_seen", k=10, exclude_seen=True)
    assert body["user_known"] is False and body["history"] == 0 and body["degraded"] is False
    results = body["results"]
    assert len(results) == 10
    assert {s for x in results for s in x["retrieval"]["sources"]} <= {"popular", "new"}
    n = ranker.settings.retrieve_n
    cold = set(ranker.feed.popular_order[:n].tolist()) | set(ranker.feed.new_order[:n].tolist())
    assert body["candidates"] == min(n, len(cold)) > 10
    assert all(x["new"] for x in results if x["retrieval"]["sources"] == ["new"])
    shoes = ranker.recommend("user_never_seen", k=5, filters={"category": "shoes"})["results"]
    assert shoes and all("shoes" in x["category"].lower() for x in shoes)
    nothing = ranker.recommend("user_never_seen", filters={"price_min": 1e9})
    assert (nothing["results"], nothing["candidates"], nothing["degraded"]) == ([], 0, False)
