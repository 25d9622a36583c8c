"""Feature tables, the Feast repository, point-in-time joins and the online store.

Feast runs for real here (SQLite online store in a temporary copy of features/; Redis in
the integration test). The tables come from the tiny profile or from a hand-made batch
whose every feature value can be worked out by hand.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from shoprank.data.io import write_tables
from shoprank.features import (
    TABLES,
    build_features,
    cached_embedder,
    historical_features,
    materialize,
    online_features,
    open_store,
    query_id,
    training_set,
)
from shoprank.features.history import Timeline, cumulative, windowed
from shoprank.features.store import FeatureRepoError, check_tables, copy_repo, store_config

ROOT = Path(__file__).resolve().parents[1]
REPO = ROOT / "features"  # the project's Feast repository; tests and benchmarks use private copies
SERVICE = "ctr_model_v1"
T0 = pd.Timestamp("2026-03-01", tz="UTC")


def same(a, b) -> bool:
    """Feature values equal, nulls equal (None or NaN), arrays element-wise as float32 or str."""

    def null(x) -> bool:
        return x is None or x is pd.NA or (isinstance(x, float | np.floating) and np.isnan(x))

    if null(a) or null(b):
        return null(a) and null(b)
    if isinstance(a, list | tuple | np.ndarray) or isinstance(b, list | tuple | np.ndarray):
        a, b = list(a), list(b)
        if a and isinstance(a[0], str | np.str_):
            return a == b
        return np.array_equal(np.asarray(a, np.float32), np.asarray(b, np.float32))
    if isinstance(a, str) or isinstance(b, str):
        return str(a) == str(b)
    return np.float32(a) == np.float32(b)


class CountingEncoder:
    """Wraps an encoder and records every text it is asked to encode."""

    def __init__(self, encoder):
        self.inner, self.key, self.dim, self.seen = encoder, encoder.key, encoder.dim, []

    def encode(self, texts):
        self.seen.extend(texts)
        return self.inner.encode(texts)


@pytest.fixture(scope="module")
def tiny_encoder():
    from shoprank.text import TextEncoder

    return TextEncoder.tiny()


@pytest.fixture(scope="module")
def tiny_features(tiny_batch, params, tiny_encoder, tmp_path_factory):
    """The tiny batch's feature tables, a repo copy beside them, and a training set of ctr_model_v1."""
    root = tmp_path_factory.mktemp("tiny_features")
    settings = params.features.model_copy(update={"repo": copy_repo(REPO, root)})
    embed = cached_embedder(tiny_encoder, root / "cache")
    built = build_features(tiny_batch, root / "data" / "features", settings, embed)
    out = training_set(settings, tiny_batch, root / "data" / "features", root / "train.parquet", SERVICE)
    return {
        "root": root,
        "settings": settings,
        "built": built,
        "train": pd.read_parquet(out["path"]),
        "summary": out,
        "embed": embed,
    }


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
def text_length_embed(texts: list[str]) -> np.ndarray:
    """A stand-in encoder whose vectors depend on the text: (len, words, 1)."""
    return np.array([[len(t), len(t.split()), 1.0] for t in texts], dtype=np.float32)


def _hand_batch(folder: Path) -> Path:
    """Two items, two users, three days. Item B is listed mid-batch (2026-03-02 10:00)."""
    ts = lambda s: pd.Timestamp(s, tz="UTC")  # noqa: E731
    catalog = pd.DataFrame(
        {
            "item_id": ["A", "B"],
            "title": ["red shoe", "blue tent"],
            "description": ["a shoe", "a tent"],
            "category": ["Shoes > Running", "Outdoors > Camping"],
            "brand": ["acme", "zelt"],
            "price": [50.0, 200.0],
            "attributes": ['{"colour": "red", "features": ["light"]}', "{}"],
            "created_at": [ts("2025-06-01"), ts("2026-03-02 10:00")],
        }
    )
    users = pd.DataFrame(
        {
            "user_id": ["U", "V"],
            "created_at": [ts("2025-01-01"), ts("2025-02-01")],
            "region": ["north", "south"],
            "device": ["app", "mobile"],
        }
    )
    rows = [  # request, ts, user, query, item, position, clicked
        ("r1", "2026-03-01 09:00", "U", "red shoe", "A", 1, 1),
        ("r2", "2026-03-01 15:00", "V", "", "A", 1, 0),
        ("r3", "2026-03-02 00:00", "U", "Red Shoe", "A", 1, 1),  # exactly at the day-2 snapshot
        ("r4", "2026-03-02 12:00", "V", "tent", "A", 1, 1),
        ("r4", "2026-03-02 12:00", "V", "tent", "B", 2, 0),
        ("r5", "2026-03-03 08:00", "U", "", "B", 1, 1),
        ("r5", "2026-03-03 08:00", "U", "", "A", 2, 0),
    ]
    imp = pd.DataFrame(
        rows, columns=["request_id", "ts", "user_id", "query", "item_id", "position", "clicked"]
    )
    imp["ts"] = pd.to_datetime(imp["ts"], utc=True)
    imp["purchased"], imp["propensity"] = 0, 0.5
    write_tables(folder, {"catalog": catalog, "users": users, "impressions": imp})
    return folder


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


# -- the tiny profile ---------------------------------------------------------------------
def test_training_set_equals_a_naive_recount(tiny_features, tiny_batch, params):
    """CTR features of sampled impressions, recomputed from the raw log by brute force."""
    train, s = tiny_features["train"], params.features
    imp = pd.read_parquet(tiny_batch / "impressions.parquet")
    assert len(train) == len(imp)  # one row per impression: none lost in the join
    k, w = s.ctr_prior_strength, s.windows_days[1]
    for _, row in train.sample(150, random_state=0).iterrows():
        cut = row["event_timestamp"].floor("D")  # the snapshot this impression may see
        before = imp[imp["ts"] < cut]
        assert (before["ts"] < row["event_timestamp"]).all()
        mine = before[(before["item_id"] == row["item_id"]) & (before["ts"] >= cut - pd.Timedelta(days=w))]
        assert row[f"item_impressions_{w}d"] == len(mine)
        if len(before):
            prior = before["clicked"].mean()
            expected = (mine["clicked"].sum() + k * prior) / (len(mine) + k)
            assert row[f"item_ctr_{w}d"] == pytest.approx(expected, rel=1e-5)
        clicks = before[(before["user_id"] == row["user_id"]) & (before["clicked"] == 1)]
        assert row["user_clicks"] == len(clicks)
        assert set(row["recent_items"]) <= set(clicks["item_id"])
        assert len(row["recent_items"]) == min(len(clicks), s.history_length)


def test_feature_tables_match_the_feast_views(tiny_features):
    store = open_store(tiny_features["settings"])
    paths = check_tables(store, tiny_features["root"] / "data" / "features")
    assert set(paths) == set(TABLES)
    for view in store.list_feature_views():
        schema = pq.read_schema(paths[view.name])
        written = set(schema.names) - {"event_timestamp", *view.join_keys}
        assert written == {f.name for f in view.features}, view.name
    views = {s.name: {p.name for p in s.feature_view_projections} for s in store.list_feature_services()}
    assert views["ctr_model_v1"] == set(TABLES)
    assert views["text_free_v1"] == set(TABLES) - {"item_text", "query_text"}  # the no-text ablation


def test_repo_and_params_drift_is_an_error(tiny_features, tmp_path):
    store = open_store(tiny_features["settings"])
    with pytest.raises(FeatureRepoError, match="paths.features is"):
        check_tables(store, tmp_path)  # the repo reads ../data/features, not this folder
    # windows_days changed on one side only: tables lack the 28-day columns the views declare
    settings = tiny_features["settings"].model_copy(update={"repo": copy_repo(REPO, tmp_path)})
    tables = tmp_path / "data" / "features"
    tables.mkdir(parents=True)
    for path in (tiny_features["root"] / "data" / "features").glob("*.parquet"):
        table = pq.read_table(path)
        pq.write_table(table.drop([c for c in table.column_names if c.endswith("_28d")]), tables / path.name)
    with pytest.raises(FeatureRepoError, match=r"lacks \[[^]]*'item_ctr_28d'"):
        materialize(settings, tables)


def test_unchanged_texts_are_never_re_encoded(tiny_batch, params, tiny_encoder, tmp_path):
    counting = CountingEncoder(tiny_encoder)
    settings = params.features
    build_features(tiny_batch, tmp_path / "a", settings, cached_embedder(counting, tmp_path / "cache"))
    first = len(counting.seen)
    assert first > 0 and len(set(counting.seen)) == first  # each distinct text once
    changed = tmp_path / "changed"
    shutil.copytree(tiny_batch, changed)
    catalog = pd.read_parquet(changed / "catalog.parquet")
    catalog.loc[0, "title"] = "a brand new title"
    write_tables(changed, {"catalog": catalog})
    counting.seen.clear()
    built = build_features(changed, tmp_path / "b", settings, cached_embedder(counting, tmp_path / "cache"))
    assert len(counting.seen) == 1 and counting.seen[0].startswith("a brand new title")
    vecs = pq.read_table(built["tables"]["item_text"]).column("item_embedding").to_pylist()
    assert np.allclose(vecs[0], tiny_encoder.encode([counting.seen[0]])[0], atol=1e-6)


def _online_vs_offline(store, train: pd.DataFrame, at: pd.Timestamp, n: int = 25) -> int:
    """Compare online values with point-in-time values at ``at`` for ``n`` entity rows; return cells."""
    rows = train.sample(n, random_state=1)[["item_id", "user_id", "query_id"]].reset_index(drop=True)
    rows = rows.drop_duplicates("item_id").drop_duplicates("user_id")
    online = online_features(store, SERVICE, rows.to_dict("records"))
    offline = historical_features(store, rows.assign(event_timestamp=at), SERVICE)
    features = [c for c in online.columns if c not in ("item_id", "user_id", "query_id")]
    assert len(features) > 30 and len(online) == len(offline) == len(rows)
    cells = 0
    for col in features:
        for a, b in zip(online[col], offline[col], strict=True):
            assert same(a, b), f"{col}: online {a!r} != offline {b!r}"
            cells += 1
    return cells


def test_online_store_equals_offline_point_in_time(tiny_features, tiny_batch):
    settings, root, train = tiny_features["settings"], tiny_features["root"], tiny_features["train"]
    mid = pd.Timestamp(tiny_features["built"]["first_snapshot"]) + pd.Timedelta(days=5, hours=7)
    first = materialize(settings, root / "data" / "features", end=mid)
    assert set(first["views"]) == set(TABLES) and first["online_store"] == "sqlite"
    store = open_store(settings)
    assert _online_vs_offline(store, train, mid) > 0
    # incremental: snapshot views continue from `mid`; static views are reloaded whole
    second = materialize(settings, root / "data" / "features")
    static = {v.name for v in store.list_feature_views() if v.tags["kind"] == "static"}
    assert static == {"item_profile", "item_text", "user_profile", "query_text"}
    for name, loaded in second["views"].items():
        assert (pd.Timestamp(loaded["from"]) < mid) if name in static else loaded["from"] == mid.isoformat()
    end = pd.Timestamp(second["end"])
    assert end == pd.Timestamp(tiny_features["built"]["last_snapshot"])
    assert _online_vs_offline(open_store(settings), train, end) > 0
    assert set(materialize(settings, root / "data" / "features")["views"]) == static  # nothing else new


def test_redis_switch_is_a_setting(tmp_path, params, monkeypatch):
    settings = params.features.model_copy(
        update={
            "repo": copy_repo(REPO, tmp_path),
            "online_store": "redis",
            "redis_url": "${SHOPRANK_TEST_REDIS}",
        }
    )
    monkeypatch.setenv("SHOPRANK_TEST_REDIS", "127.0.0.1:6390,db=2")
    config = store_config(settings)
    assert (
        config.online_store.type == "redis" and config.online_store.connection_string == "127.0.0.1:6390,db=2"
    )
    assert config.offline_store.type == "file" and config.project == "shoprank"
    assert (
        store_config(params.features.model_copy(update={"repo": tmp_path / "features"})).online_store.type
        == "sqlite"
    )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def redis_server():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI installs it")
    port = _free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.integration
def test_materialize_into_redis_and_read_back(redis_server, tiny_features, tmp_path):
    root = tiny_features["root"]
    # the repo copy sits beside the tables, as features/ sits beside data/ in the project
    shutil.copytree(root / "data", tmp_path / "data")
    settings = tiny_features["settings"].model_copy(
        update={
            "repo": copy_repo(REPO, tmp_path),
            "online_store": "redis",
            "redis_url": redis_server,
        }
    )
    loaded = materialize(settings, tmp_path / "data" / "features")
    assert loaded["online_store"] == "redis" and set(loaded["views"]) == set(TABLES)
    store = open_store(settings)
    end = pd.Timestamp(loaded["end"])
    assert _online_vs_offline(store, tiny_features["train"], end) > 0
    import redis

    host, port = redis_server.split(":")
    assert redis.Redis(host=host, port=int(port)).dbsize() > 0  # the values really are in Redis
    missing = online_features(store, SERVICE, [{"item_id": "nope", "user_id": "nobody", "query_id": ""}])
    assert missing["price"].isna().all() and missing["item_embedding"].isna().all()


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
