"""Feature tables: the pure pieces, and a hand-made batch whose every feature value can be
worked out by hand (point-in-time joins, CTR and COEC features, catalog edits reaching
the online store).

Feast runs for real here (SQLite online store in a temporary copy of features/).
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest

from shoprank.data.io import write_tables
from shoprank.features import build_features, materialize, online_features, open_store, query_id, training_set
from shoprank.features.history import Timeline, cumulative, windowed
from shoprank.features.store import copy_repo
from tests.feature_helpers import REPO, SERVICE, _hand_batch, text_length_embed


# -- pure pieces --------------------------------------------------------------------------
def test_query_id_is_stable_and_normalised():
    assert (
        query_id("Red  Running\tShoes ") == query_id("red running shoes") == query_id("ＲＥＤ running shoes")
    )
    assert query_id("red running shoes").startswith("q_") and len(query_id("x")) == 18
    assert query_id("red shoes") != query_id("blue shoes")
    assert query_id("") == query_id("   ") == ""


def test_cumulative_counts_only_earlier_days():
    # entity 0: events on days 0, 0, 2; entity 1: one on day 1
    cum = cumulative(np.array([0, 0, 0, 1]), np.array([0, 0, 2, 1]), n_entities=2, n_days=3)
    assert cum.tolist() == [[0, 2, 2, 3], [0, 0, 1, 1]]  # snapshot b sees days < b
    assert windowed(cum, 1).tolist() == [[0, 2, 0, 1], [0, 0, 1, 0]]
    assert windowed(cum, 7).tolist() == cum.tolist()


def test_timeline_snapshots_span_the_batch():
    ts = pd.Series(pd.to_datetime(["2026-03-01 09:00", "2026-03-03 23:59"], utc=True))
    tl = Timeline.of(ts)
    assert tl.n_days == 3 and list(tl.stamps.strftime("%d")) == ["01", "02", "03", "04"]


# -- a hand-made batch: every value known ------------------------------------------------
@pytest.fixture(scope="module")
def hand(params, tmp_path_factory):
    root = tmp_path_factory.mktemp("hand")
    batch = _hand_batch(root / "batch")
    settings = params.features.model_copy(update={"repo": copy_repo(REPO, root), "ctr_prior_strength": 2.0})
    build_features(batch, root / "data" / "features", settings, text_length_embed)
    out = training_set(settings, batch, root / "data" / "features", root / "train.parquet", SERVICE)
    train = pd.read_parquet(out["path"]).set_index(["request_id", "item_id"])
    return {"root": root, "train": train, "settings": settings, "batch": batch}


def test_point_in_time_join_takes_the_earlier_snapshot(hand):
    train, k = hand["train"], hand["settings"].ctr_prior_strength
    stats = pd.read_parquet(hand["root"] / "data" / "features" / "item_stats.parquet").set_index(
        ["item_id", "event_timestamp"]
    )
    # A later value exists: A's 03-03 snapshot counts r1..r4 (4 impressions, 3 clicks) ...
    assert stats.loc[("A", pd.Timestamp("2026-03-03", tz="UTC")), "item_impressions_1d"] == 2
    assert stats.loc[("A", pd.Timestamp("2026-03-03", tz="UTC")), "item_impressions_7d"] == 4
    # ... but r4 (03-02 12:00) is joined to the 03-02 snapshot: r1 and r2 only, prior = 1/2
    r4 = train.loc[("r4", "A")]
    assert r4["item_impressions_7d"] == 2
    assert r4["item_ctr_7d"] == pytest.approx((1 + k * 0.5) / (2 + k), rel=1e-6)
    assert r4["user_impressions_7d"] == 1 and r4["user_clicks"] == 0  # V saw A once, no click
    # r5 (03-03) sees the 03-03 snapshot, r3's and r4's clicks included
    assert train.loc[("r5", "A"), "item_impressions_7d"] == 4


def test_own_click_never_counted_even_at_the_snapshot_instant(hand):
    train, k = hand["train"], hand["settings"].ctr_prior_strength
    r3 = train.loc[("r3", "A")]  # clicked, stamped exactly 2026-03-02 00:00
    assert r3["clicked"] == 1
    assert r3["item_impressions_1d"] == 2  # r1 and r2: not r3 itself
    assert r3["item_ctr_1d"] == pytest.approx((1 + k * 0.5) / (2 + k), rel=1e-6)
    assert r3["user_clicks"] == 1 and list(r3["recent_items"]) == ["A"]  # r1 only
    assert list(train.loc[("r5", "B"), "recent_items"]) == ["A", "A"]  # r3 then r1, newest first
    assert train.loc[("r5", "B"), "user_price_pref"] == pytest.approx(50.0)
    # nothing before day 0: CTRs are null, never a number computed from the future
    assert train.loc[("r1", "A"), "item_impressions_28d"] == 0 and np.isnan(
        train.loc[("r1", "A"), "item_ctr_28d"]
    )


def test_item_listed_mid_batch_joins_its_creation_row(hand):
    b = hand["train"].loc[("r4", "B")]  # two hours after B was listed
    assert b["item_age_days"] == 0 and b["item_is_new"] == 1 and b["item_impressions_28d"] == 0
    assert b["price"] == 200 and b["category_top"] == "Outdoors" and b["colour"] is None
    a = hand["train"].loc[("r4", "A")]
    assert a["colour"] == "red" and a["n_features"] == 1


def test_query_features_join_by_normalised_text(hand):
    train = hand["train"]
    assert train.loc[("r1", "A"), "query_id"] == train.loc[("r3", "A"), "query_id"]  # "red shoe" ~ "Red Shoe"
    assert train.loc[("r1", "A"), "query_text"] == "red shoe"
    feed = train.loc[("r2", "A")]
    assert feed["is_search"] == 0 and feed["query_embedding"] is None


def test_catalog_edits_reach_the_online_store(hand, tmp_path):
    batch = tmp_path / "batch"
    shutil.copytree(hand["batch"], batch)
    settings = hand["settings"].model_copy(update={"repo": copy_repo(REPO, tmp_path)})
    tables = tmp_path / "data" / "features"
    build_features(batch, tables, settings, text_length_embed)
    materialize(settings, tables)
    row = [{"item_id": "A", "user_id": "U", "query_id": query_id("red shoe")}]
    before = online_features(open_store(settings), SERVICE, row).iloc[0]
    assert before["price"] == 50 and list(before["item_embedding"]) == [len("red shoe. a shoe"), 4, 1]
    assert list(before["recent_items"]) == ["B", "A", "A"]  # U's clicks r5, r3, r1: the last snapshot
    catalog = pd.read_parquet(batch / "catalog.parquet")
    catalog.loc[catalog["item_id"] == "A", ["price", "title"]] = [55.0, "red running shoe"]
    write_tables(batch, {"catalog": catalog})  # same listing time, new price and title
    build_features(batch, tables, settings, text_length_embed)
    materialize(settings, tables)
    after = online_features(open_store(settings), SERVICE, row).iloc[0]
    assert after["price"] == 55 and list(after["item_embedding"]) == [len("red running shoe. a shoe"), 5, 1]


def test_expected_clicks_is_the_days_ctr_at_the_position():
    from shoprank.features.items import expected_clicks

    imp = pd.DataFrame(
        {"day": [0, 0, 0, 0, 1, 1], "position": [1, 1, 2, 2, 1, 2], "clicked": [1, 0, 1, 1, 0, 0]}
    )
    # day 0: position 1 clicked 1 of 2, position 2 clicked 2 of 2; day 1: nothing clicked
    np.testing.assert_allclose(expected_clicks(imp), [0.5, 0.5, 1.0, 1.0, 0.0, 0.0])


def test_coec_credits_clicks_earned_low_on_the_page(hand):
    stats = pd.read_parquet(hand["root"] / "data" / "features" / "item_stats.parquet").set_index(
        ["item_id", "event_timestamp"]
    )
    # before 03-03: A had 3 clicks where 3 were expected, B none where none were expected: both at 1,
    # the prior; a raw CTR ranks A (3 of 4) far above B (0 of 1)
    at = pd.Timestamp("2026-03-03", tz="UTC")
    assert stats.loc[("A", at), "item_coec_7d"] == pytest.approx(1.0)
    assert stats.loc[("B", at), "item_coec_7d"] == pytest.approx(1.0)
    assert stats.loc[("A", at), "item_ctr_7d"] > stats.loc[("B", at), "item_ctr_7d"] + 0.25
