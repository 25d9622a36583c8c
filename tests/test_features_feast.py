"""The tiny profile through the Feast repository: the training set, the repository's checks,
the online store against point-in-time values, Redis.

Feast runs for real here (SQLite online store in a temporary copy of features/; Redis in
the integration test).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time

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
    training_set,
)
from shoprank.features.store import FeatureRepoError, check_tables, copy_repo, store_config
from tests.conftest import missing_server
from tests.feature_helpers import REPO, SERVICE, same


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
        assert row["item_impressions_all"] == (before["item_id"] == row["item_id"]).sum()
        # the shopper's day so far: strictly earlier impressions of the same day, never this one's
        today = imp[
            (imp["user_id"] == row["user_id"]) & (imp["ts"] >= cut) & (imp["ts"] < row["event_timestamp"])
        ]
        assert row["user_impressions_today"] == len(today)
        if len(before):
            expected = (today["clicked"].sum() + k * prior) / (len(today) + k)
            assert row["user_ctr_today"] == pytest.approx(expected, rel=1e-5)


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
        missing_server("redis-server is not installed")
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
