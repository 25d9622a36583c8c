"""OnlineFeatures: item and user features from the online store, cached for their TTL, the packaged
tables when the store fails, and the stored query vector with them. A fake read stands in for Feast.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from shoprank.ranking.features import OnlineFeatures


def _features(open_store, ttl=60.0, clock=None):
    items = pd.DataFrame({"item_id": ["a", "b"], "price": [1.0, 2.0], "item_ctr_28d": [0.1, 0.2]})
    users = pd.DataFrame({"user_id": ["u1"], "user_clicks": [3]})
    return OnlineFeatures(
        open_store,
        "svc",
        items,
        ["price", "item_ctr_28d"],
        users,
        ["user_clicks"],
        ttl,
        5.0,
        clock=clock or time.monotonic,
    )


def test_online_features_fall_back_to_packaged_values_when_the_store_fails():
    def broken():
        raise ConnectionError("store down")

    f = _features(broken)
    got = f.fetch(np.array([1, 0]), "u1", "")
    assert got.fallback == "online_store_unreachable"
    assert got.items["price"].tolist() == [2.0, 1.0]
    assert got.user == {"user_clicks": 3} and got.user_known
    assert not f.healthy()


def test_online_features_are_cached_for_their_ttl(monkeypatch):
    calls = []

    def fake_read(store, service, rows):
        calls.append(len(rows))
        return pd.DataFrame(
            {
                "price": [5.0] * len(rows),
                "item_ctr_28d": [0.5] * len(rows),
                "user_clicks": [7] * len(rows),
                "user_impressions_1d": [1] * len(rows),
            }
        )

    monkeypatch.setattr("shoprank.ranking.features.read_online", fake_read)
    now = [0.0]
    f = _features(lambda: object(), ttl=10.0, clock=lambda: now[0])
    first = f.fetch(np.array([0, 1]), "u1", "")
    assert (
        first.fallback is None
        and first.items["price"].tolist() == [5.0, 5.0]
        and first.user["user_clicks"] == 7
    )
    f.fetch(np.array([0, 1]), "u1", "")
    assert calls == [2]  # the second request was served from the cache
    now[0] = 11.0
    f.fetch(np.array([0]), "u1", "")
    assert calls == [2, 1]


def test_online_features_give_the_query_vector_with_the_item_read_or_alone(monkeypatch):
    """The stored query embedding rides on a needed item/user read, else one query-only read."""
    reads: list[list[dict]] = []
    vec = np.arange(4, dtype=np.float32)

    def fake_read(store, service, rows):
        reads.append(rows)
        known = [r["query_id"] == "q_known" for r in rows]
        embedding = np.empty(len(rows), object)
        embedding[:] = [np.stack([vec] * len(rows))[i] if k else None for i, k in enumerate(known)]
        return pd.DataFrame(
            {
                "price": [5.0] * len(rows),
                "item_ctr_28d": [0.5] * len(rows),
                "user_clicks": [7] * len(rows),
                "query_embedding": embedding,
            }
        )

    monkeypatch.setattr("shoprank.ranking.features.read_online", fake_read)
    now = [0.0]
    f = _features(lambda: object(), ttl=10.0, clock=lambda: now[0])
    first = f.fetch(np.array([0, 1]), None, "q_known", want_query=True)  # items stale: one read for all
    assert len(reads) == 1 and len(reads[0]) == 2 and first.store_calls == 1
    np.testing.assert_array_equal(first.query_embedding, vec)
    assert first.query_embedding.base is None  # owned: a cached vector must not pin the read's matrix
    assert f.fetch(np.array([0, 1]), None, "q_known").query_embedding is None  # not wanted: no read
    assert len(reads) == 1
    alone = f.fetch(np.array([0, 1]), None, "q_known", want_query=True)  # items fresh: the query alone
    assert len(reads) == 2 and reads[1] == [{"item_id": "", "user_id": "", "query_id": "q_known"}]
    np.testing.assert_array_equal(alone.query_embedding, vec)
    assert alone.fallback is None and alone.items["price"].tolist() == [5.0, 5.0]
    unseen = f.fetch(np.array([0]), None, "q_unseen", want_query=True)
    assert unseen.query_embedding is None and unseen.fallback is None and len(reads) == 3


def test_a_failed_query_read_opens_the_circuit_and_degrades_nothing(monkeypatch):
    tries = []

    def broken(store, service, rows):
        tries.append(rows)
        raise ConnectionError("store down")

    now = [0.0]
    f = _features(lambda: object(), ttl=10.0, clock=lambda: now[0])
    f.fetched[:] = 0.0  # items fresh
    monkeypatch.setattr("shoprank.ranking.features.read_online", broken)
    got = f.fetch(np.array([0, 1]), None, "q_known", want_query=True)
    assert got.query_embedding is None and got.fallback is None  # the encoder gives the same vector
    assert not f.healthy() and "store down" in (f.last_error or "")
    assert f.query_vector("q_known") is None and len(tries) == 1  # the circuit is open: not tried
    now[0] = 6.0  # after store_retry_s the store is tried again
    monkeypatch.setattr(
        "shoprank.ranking.features.read_online",
        lambda store, service, rows: pd.DataFrame({"query_embedding": [np.ones(4, np.float32)]}),
    )
    np.testing.assert_array_equal(f.query_vector("q_known"), np.ones(4, np.float32))
    assert f.healthy()


def test_a_probe_tells_at_once_that_the_store_is_back_and_closes_the_circuit(monkeypatch):
    """Readiness probes the store: no wait for the circuit or the background refresh."""
    up = [False]
    reads = []

    def read(store, service, rows):
        reads.append(rows)
        if not up[0]:
            raise ConnectionError("store down")
        return pd.DataFrame({"price": [5.0] * len(rows), "item_ctr_28d": [0.5] * len(rows)})

    monkeypatch.setattr("shoprank.ranking.features.read_online", read)
    opened = []

    def open_store():  # a store missing at start: opening fails until it exists
        if not up[0]:
            raise FileNotFoundError("no online store")
        opened.append(1)
        return object()

    now = [0.0]  # the clock stands still: a recovery may not wait for store_retry_s
    f = _features(open_store, clock=lambda: now[0])
    assert f.fetch(np.array([0, 1]), None, "").fallback == "online_store_unreachable"
    assert f.probe() is False and f.probe() is False  # each probe tries, circuit open or not
    up[0] = True
    assert f.probe() is True and opened == [1] and f.healthy()
    got = f.fetch(np.array([0, 1]), None, "")
    assert got.fallback is None and got.items["price"].tolist() == [5.0, 5.0]
