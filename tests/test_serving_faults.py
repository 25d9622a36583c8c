"""The service started while its online store is missing or its Redis is dead: it answers,
degraded and never with a 500, readiness says the store is not ok (without the error's
text), and one readiness check after the store is back says ok again."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import pytest

from tests.serving_fixtures import Server, free_port

NOT_OK = "unreachable"


def _degraded_but_answering(server: Server) -> None:
    ready = server.get("/ready")
    assert ready.status_code == 200 and ready.json()["online_store"] == NOT_OK
    assert set(ready.json()) == {
        "ready",
        "model_version",
        "kind",
        "items",
        "online_store",
        "understanding",
        "encoder_runtime",
        "shoppers",
        "experiment",
    }  # no error text
    assert ready.json()["shoppers"] == "ok"  # the service holds the key the bundle's shoppers were named with
    for path, body in (
        ("/search", {"query": "tent", "k": 3}),
        ("/recommend", {"user_id": "user_000003", "k": 3}),
        ("/intent", {"query": "tent"}),
    ):
        r = server.post(path, body)
        assert r.status_code == 200, (path, r.text)
    search = server.post("/search", {"query": "tent", "k": 3}).json()
    assert search["degraded"] is True and search["fallback"] == "online_store_unreachable"


@pytest.mark.slow
@pytest.mark.integration
def test_a_service_started_without_its_sqlite_store_answers_degraded_and_recovers(serving_env):
    repo = serving_env.root / "features-faults"
    shutil.copytree(serving_env.root / "features", repo, dirs_exist_ok=True)
    store = repo / "data" / "online_store.db"
    aside = store.with_suffix(".aside")
    store.rename(aside)  # the store is missing before the service starts
    params = serving_env.params_variant("no-store", repo=str(repo))
    server = Server(serving_env.env(SHOPRANK_PARAMS=str(params)), serving_env.root).start()
    try:
        _degraded_but_answering(server)
        aside.rename(store)
        assert server.get("/ready").json()["online_store"] == "ok"  # the first check after it is back
        search = server.post("/search", {"query": "tent", "k": 3}).json()
        assert search["degraded"] is False
    finally:
        server.stop()
    assert "online store probe failed" in server.log()  # the details are in the log


@pytest.mark.slow
@pytest.mark.integration
def test_a_service_started_with_a_dead_redis_answers_degraded_and_recovers(serving_env, tmp_path):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server); CI installs it")
    port = free_port()
    params = serving_env.params_variant("dead-redis", online_store="redis", redis_url=f"127.0.0.1:{port}")
    server = Server(serving_env.env(SHOPRANK_PARAMS=str(params)), serving_env.root).start()
    redis = None
    try:
        _degraded_but_answering(server)
        redis = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=tmp_path,
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while (
            subprocess.run(
                ["redis-cli", "-p", str(port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            != "PONG"
        ):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.1)
        ready = server.get("/ready").json()
        assert ready["online_store"] == "ok", json.dumps(ready)
        assert server.post("/search", {"query": "tent", "k": 3}).status_code == 200
    finally:
        server.stop()
        if redis is not None:
            redis.terminate()
            redis.wait(10)
