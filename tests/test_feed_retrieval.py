"""A feed's candidates on small hand-made data: the click tables and the named retrievers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from shoprank.retrieval import HybridRetriever
from shoprank.retrieval.clicks import click_rows, co_clicked, read_tables, recent_clicks, write_tables
from shoprank.retrieval.history import NO_TABLES, RETRIEVERS, FeedIndex, Shopper, retrieve

T0 = pd.Timestamp("2024-03-01", tz="UTC")
IDS = np.array([f"item_{i}" for i in range(8)])


def clicks_of(rows: list[tuple[str, float, int, str, int]]) -> pd.DataFrame:
    """Impressions from (user, hours after T0, position, item, clicked)."""
    df = pd.DataFrame(rows, columns=["user_id", "hours", "position", "item_id", "clicked"])
    df["ts"] = T0 + pd.to_timedelta(df.pop("hours"), unit="h")
    return df


IMPRESSIONS = clicks_of(
    [
        ("u1", 0, 1, "item_0", 1),
        ("u1", 0, 2, "item_1", 1),  # one response: shown lower, so the earlier click of the two
        ("u1", 30, 1, "item_2", 1),
        ("u2", 1, 3, "item_0", 1),
        ("u2", 2, 1, "item_1", 1),
        ("u2", 2, 2, "item_5", 0),  # shown, not clicked: no pair
        ("u3", 0, 1, "item_3", 1),
        ("u3", 220, 1, "item_0", 1),
        ("u4", 1, 1, "ghost", 1),  # not in the catalog: ignored
    ]
)


def neighbours(table, row: int) -> dict[str, float]:
    rows, weights = table.of(row)
    return {str(IDS[r]): round(float(w), 4) for r, w in zip(rows, weights, strict=True)}


def test_co_clicked_items_are_those_one_shopper_clicked_within_the_window():
    clicks = click_rows(IMPRESSIONS, IDS)
    assert len(clicks) == 7 and clicks["row"].tolist()[:3] == [1, 0, 2]  # u1: item_1, item_0, item_2
    near = co_clicked(clicks, len(IDS), window=2, keep=5)  # adjacent clicks only
    # item_0: clicked by 3 shoppers; item_1 by 2, both of them with item_0: 2 / sqrt(3 * 2)
    assert neighbours(near, 0) == {"item_1": 0.8165, "item_2": 0.5774, "item_3": 0.5774}
    assert neighbours(near, 1) == {"item_0": 0.8165}  # item_1 -> item_2 is two clicks apart
    assert neighbours(co_clicked(clicks, len(IDS), window=3, keep=5), 1) == {
        "item_0": 0.8165,
        "item_2": 0.7071,
    }
    assert neighbours(near, 5) == {} and neighbours(near, 7) == {}
    top1 = co_clicked(clicks, len(IDS), window=2, keep=1)
    assert neighbours(top1, 0) == {"item_1": 0.8165} and top1.pairs == 4
    # the same clicks in any order give the same table
    shuffled = click_rows(IMPRESSIONS.sample(frac=1.0, random_state=3), IDS)
    again = co_clicked(shuffled, len(IDS), window=2, keep=5)
    for got, want in zip(
        (again.indptr, again.indices, again.weights), (near.indptr, near.indices, near.weights), strict=True
    ):
        np.testing.assert_array_equal(got, want)


def test_recent_clicks_count_the_last_days_and_the_tables_round_trip(tmp_path):
    clicks = click_rows(IMPRESSIONS, IDS)
    assert recent_clicks(clicks, len(IDS), days=7).tolist() == [1, 0, 0, 0, 0, 0, 0, 0]  # the last click
    assert recent_clicks(clicks, len(IDS), days=30).tolist() == [3, 2, 1, 1, 0, 0, 0, 0]
    summary = write_tables(IMPRESSIONS, IDS, tmp_path / "recommend", window=2, neighbours=5, days=30)
    assert summary["clicks"] == 7 and summary["pairs"] == 6 and summary["recently_clicked_items"] == 4
    table, popular = read_tables(tmp_path / "recommend", IDS)
    assert neighbours(table, 0) == {"item_1": 0.8165, "item_2": 0.5774, "item_3": 0.5774}
    assert popular.tolist() == [3, 2, 1, 1, 0, 0, 0, 0]
    with pytest.raises(ValueError, match=r"co_clicked.npz: its 8 items are not the catalog's 8 in order"):
        read_tables(tmp_path / "recommend", IDS[::-1])


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> FeedIndex:
    """Eight items: 0-3 one kind (4 close to 0 by text), 5-7 new; clicks as IMPRESSIONS."""
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(len(IDS), 16)).astype(np.float32)
    vectors[4] = vectors[0] + 0.05 * rng.normal(size=16)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    items = HybridRetriever.build([f"product {i}" for i in range(len(IDS))], vectors)
    folder = tmp_path_factory.mktemp("feed") / "recommend"
    write_tables(IMPRESSIONS, IDS, folder, window=2, neighbours=5, days=30)
    is_new = np.array([0, 0, 0, 0, 0, 1, 1, 1])
    listed = np.array([0, 0, 0, 0, 0, 5, 7, 6])  # item_6 is the newest
    return FeedIndex.load(folder, IDS, items, is_new, listed, np.zeros(len(IDS)))


def test_a_shopper_with_clicks_gets_their_co_clicked_and_similar_items(index):
    shopper = Shopper("u1", np.array([0]))  # clicked item_0
    found = {name: find(index, shopper, 3, None).tolist() for name, find in RETRIEVERS.items()}
    assert found["co_clicked"] == [1, 2, 3]
    assert found["similar"][0] == 4 and 0 not in found["similar"]
    assert found["popular"] == [0, 1, 2] and found["new"] == [6, 7, 5]
    got = retrieve(index, shopper, 8)
    sources = dict(zip(got.rows.tolist(), got.sources, strict=True))
    assert set(sources[1]) >= {"co_clicked", "popular"} and "similar" in sources[4]
    assert "new" in sources[6] and np.all(np.diff(got.score) <= 0)
    # the shopper's own clicks left out, and the filters' mask respected by every retriever
    allowed = np.ones(len(IDS), bool)
    allowed[[0, 1]] = False
    kept = retrieve(index, shopper, 8, allowed)
    assert not {0, 1} & set(kept.rows.tolist()) and {2, 3, 4, 6} <= set(kept.rows.tolist())


def test_similar_items_come_from_each_click_in_turn_the_latest_first(index):
    vectors = index.items.vectors
    cosine = vectors @ vectors[2]  # the latest click, item_2: its neighbours are not as close
    cosine[[0, 2]] = -np.inf  # ... as item_4 is to the earlier click, item_0
    nearest_of_latest = int(np.argmax(cosine))
    assert nearest_of_latest != 4 and cosine[nearest_of_latest] < float(vectors[4] @ vectors[0])
    found = RETRIEVERS["similar"](index, Shopper("u1", np.array([2, 0])), 3, None).tolist()
    assert found[:2] == [nearest_of_latest, 4] and not {0, 2} & set(found)


def test_each_retrievers_head_survives_the_cut_whatever_the_fused_scores(index):
    def crowd(index, shopper, n, allowed):
        return np.arange(1, 8)[:n]

    def lonely(index, shopper, n, allowed):
        return np.array([0])

    retrievers = {"a": crowd, "b": crowd, "lonely": lonely}
    got = retrieve(index, Shopper("u1", np.zeros(0, np.int64)), 6, retrievers=retrievers)
    # item_0 is found once, at the head of its list: it scores below all of the crowd, yet stays
    assert got.rows.tolist() == [1, 2, 3, 4, 5, 0] and got.sources[-1] == ("lonely",)
    assert np.all(np.diff(got.score) <= 0)


def test_a_shopper_without_clicks_gets_popular_and_new_items(index):
    got = retrieve(index, Shopper("someone_new", np.zeros(0, np.int64)), 8)
    assert got.rows.tolist() == [0, 6, 1, 7, 2, 5, 3]  # the two lists interleaved by reciprocal rank
    assert {s for found in got.sources for s in found} == {"popular", "new"}


def test_a_retriever_is_one_entry_and_a_bundle_without_tables_still_serves(index, tmp_path):
    def cheapest(index: FeedIndex, shopper: Shopper, n: int, allowed) -> np.ndarray:
        return np.array([7, 3])[:n]

    got = retrieve(index, Shopper("u1", np.array([0])), 8, retrievers={**RETRIEVERS, "cheapest": cheapest})
    sources = dict(zip(got.rows.tolist(), got.sources, strict=True))
    assert sources[7][-2:] == ("new", "cheapest") and sources[3][-1] == "cheapest"
    bare = FeedIndex.load(tmp_path / "none", IDS, index.items, np.zeros(8), np.zeros(8), np.arange(8) / 10)
    assert bare.fallback == NO_TABLES
    shopper = Shopper("u1", np.array([0]))  # no co-clicks; popular by the item table's click rate
    assert RETRIEVERS["co_clicked"](bare, shopper, 3, None).tolist() == []
    assert RETRIEVERS["popular"](bare, shopper, 3, None).tolist() == [7, 6, 5]


def test_collaborative_retrieval_follows_the_learned_factors(index, tmp_path):
    from shoprank.retrieval.factors import read_factors, write_factors

    arrays = {  # a model that learned rows for two shoppers and three items (the others are rare)
        "user_ids": np.array(["u1", "u9"]),
        "user_factors": np.array([[1.0, 0.0], [0.0, 1.0]], np.float32),
        "item_ids": np.array(["item_6", "item_2", "item_5"]),
        "item_factors": np.array([[2.0, 0.0], [0.5, 3.0], [1.0, 1.0]], np.float32),
        "item_bias": np.array([0.0, 0.0, 0.5], np.float32),
    }
    summary = write_factors(arrays, IDS, tmp_path)
    assert summary == {"users": 2, "items": 3, "dim": 2}
    factors = read_factors(tmp_path, IDS)
    with_factors = FeedIndex(
        index.items, index.co_clicks, np.zeros(8), np.zeros(8), np.zeros(8), factors=factors
    )
    find = RETRIEVERS["collaborative"]
    # u1 = (1, 0): item_6 2.0, item_5 1.5, item_2 0.5; u9 = (0, 1): item_2 3.0, item_5 1.5, item_6 0.0
    assert find(with_factors, Shopper("u1", np.array([0])), 8, None).tolist() == [6, 5, 2]
    assert find(with_factors, Shopper("u9", np.zeros(0, np.int64)), 2, None).tolist() == [2, 5]
    allowed = np.ones(8, bool)
    allowed[6] = False
    assert find(with_factors, Shopper("u1", np.array([0])), 8, allowed).tolist() == [5, 2]
    assert find(with_factors, Shopper("stranger", np.zeros(0, np.int64)), 8, None).tolist() == []
    got = retrieve(with_factors, Shopper("u9", np.zeros(0, np.int64)), 8)  # a shopper with no clicks
    assert "collaborative" in dict(zip(got.rows.tolist(), got.sources, strict=True))[2]
    with pytest.raises(ValueError, match="items are not the catalog's 8 in order"):
        read_factors(tmp_path, IDS[::-1])
    assert read_factors(tmp_path / "none", IDS) is None
