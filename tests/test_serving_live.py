"""The live service over real HTTP, on the tiny champion packaged into a private BentoML store.

The tests share the session's ``serving_env`` and uvicorn ``live_server`` (tests/conftest.py);
a second server runs with an API key and an unreachable online store, and the last test
kills the live server and starts it again (`bentoml serve`: tests/test_serving_bentoml.py).
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import yaml

from shoprank.artifacts import FEATURE_SERVICE
from shoprank.feedback import FeedbackLog
from tests.conftest import missing_server
from tests.serving_fixtures import Server, free_port, logged_queries


def _served(env, request_id: str, wait_s: float = 5.0) -> pd.DataFrame:
    """The log's records of a request; `served` records are group-committed just after the response."""
    deadline = time.monotonic() + wait_s
    while True:
        log = FeedbackLog(env.feedback_dir).read()
        got = log[log["request_id"] == request_id]
        if (got["event"] == "served").any() or time.monotonic() > deadline:
            time.sleep(0.2)  # one batch holds a whole response: give a straggler batch a moment
            log = FeedbackLog(env.feedback_dir).read()
            return log[log["request_id"] == request_id]
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.integration
def test_package_stores_the_champion_with_its_lineage(serving_env):
    info = yaml.safe_load((serving_env.bundle / "model.yaml").read_text())
    meta = info["metadata"]
    champion = json.loads((serving_env.root / "models" / "champion.json").read_text())
    assert meta["champion_version"] == champion["version"] and meta["sha256"] == champion["sha256"]
    assert meta["lineage_data_version"] == champion["lineage"]["data_version"]
    assert meta["feature_service"] == FEATURE_SERVICE
    manifest = json.loads((serving_env.bundle / "manifest.json").read_text())
    assert manifest["encoder"]["key"] and manifest["understanding"]["intent"]["accuracy"] > 0.5
    for name in ("scorer.pt", "items.parquet", "users.parquet", "understanding.pkl", "retrieval/items.faiss"):
        assert (serving_env.bundle / name).exists(), name
    # the feeds' click tables, from the batch's clicks
    feed = manifest["recommend"]
    assert (
        feed["clicks"] > 0
        and feed["pairs"] > 0
        and feed["window"] == serving_env.raw["features"]["history_length"]
    )
    assert (serving_env.bundle / "recommend" / "co_clicked.npz").is_file()
    # the query encoder as ONNX, checked against PyTorch on logged queries and titles at export
    export = manifest["encoder"]["onnx_export"]
    assert manifest["encoder"]["onnx"] == "encoder" and export["key"] == manifest["encoder"]["key"]
    assert export["parity_texts"] >= 16 and export["parity_max_abs_diff"] <= 1e-4
    assert (serving_env.bundle / "encoder" / "model.onnx").is_file()


@pytest.mark.slow
@pytest.mark.integration
def test_health_readiness_and_metrics(live_server):
    assert live_server.get("/health").json()["status"] == "ok"
    ready = live_server.get("/ready").json()
    assert ready["ready"] and ready["online_store"] == "ok" and ready["understanding"]
    assert ready["encoder_runtime"] == "onnx"
    live_server.post("/search", {"query": "tent"})
    text = live_server.get("/metrics").text
    for name in ("shoprank_request_seconds_bucket", "shoprank_score_bucket", "shoprank_stage_seconds"):
        assert name in text
    assert 'shoprank_requests_total{endpoint="search",status="200"}' in text


@pytest.mark.slow
@pytest.mark.integration
def test_search_returns_scored_explained_results_and_logs_what_it_served(live_server, serving_env):
    r = live_server.post("/search", {"query": "waterproof tent", "user_id": "user_000003", "k": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["degraded"] is False and body["fallback"] is None and body["user_known"] is True
    assert body["intent"] in {"buy", "browse", "compare", "price", "learn"}
    results = body["results"]
    assert len(results) == 8 and [x["position"] for x in results] == list(range(1, 9))
    for x in results:
        assert {"item_id", "title", "price", "score", "reasons", "exploration"} <= set(x)
        assert 0 < x["score"] < 1
    assert any(x["reasons"] for x in results)
    assert all({"feature", "impact", "text"} <= set(reason) for x in results for reason in x["reasons"])
    served = _served(serving_env, body["request_id"]).sort_values("position")
    assert served["item_id"].tolist() == [x["item_id"] for x in results]
    assert (served["event"] == "served").all() and (served["query"] == "waterproof tent").all()
    assert (served["user_id"] == serving_env.pseudonym("user_000003")).all() and served[
        "model_version"
    ].notna().all()


@pytest.mark.slow
@pytest.mark.integration
def test_search_filters_by_category_and_price(live_server, serving_env):
    r = live_server.post(
        "/search", {"query": "shoes", "k": 20, "filters": {"category": "shoes", "price_max": 80}}
    )
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert results
    assert all("shoes" in x["category"].lower() and x["price"] <= 80 for x in results)
    nothing = live_server.post("/search", {"query": "shoes", "filters": {"price_min": 1e9}}).json()
    assert nothing["results"] == []
    assert "shoprank_empty_results_total" in live_server.get("/metrics").text


@pytest.mark.slow
@pytest.mark.integration
def test_rank_scores_and_orders_the_candidates(live_server, serving_env):
    items = pd.read_parquet(serving_env.bundle / "items.parquet")["item_id"].tolist()[:100]
    body = {"query": "hiking boots", "user_id": "user_000007", "item_ids": items, "shown": 12}
    r = live_server.post("/rank", body)
    assert r.status_code == 200, r.text
    body = r.json()
    assert sorted(body["order"]) == sorted(items) and body["shown"] == 12
    scores = [x["score"] for x in body["results"]]
    assert scores == sorted(scores, reverse=True)
    # what the caller shows is an impression; the other 88 were scored, never seen
    served = _served(serving_env, body["request_id"])
    assert len(served) == 12 and set(served["item_id"]) == set(body["order"][:12])
    assert ["feedback_token" in x for x in body["results"]] == [True] * 12 + [False] * 88
    # a score is per item, whatever else is ranked beside it (anonymous: a known shopper's
    # day so far moves with every response, see test_serving_session.py)
    full, small = (
        {
            x["item_id"]: x["score"]
            for x in live_server.post("/rank", {"query": "hiking boots", "item_ids": ids}).json()["results"]
        }
        for ids in (items, items[:5])
    )
    assert all(small[i] == pytest.approx(full[i], abs=1e-5) for i in small)
    # a query the logs never had pays for a BERT pass (timed as "encode"); later ones reuse it
    new = {"query": "waterproof trail tent 7391", "item_ids": items[:5]}
    first, second = (live_server.post("/rank", new).json() for _ in range(2))
    assert "encode" in first["timings_ms"] and "encode" not in second["timings_ms"]
    assert (first["query_vector"], second["query_vector"]) == ("encoder", "cache")
    # a logged query's vector comes from the online store, no BERT pass; then from the cache
    logged = logged_queries(serving_env)[-1]
    first, second = (
        live_server.post("/rank", {"query": logged, "item_ids": items[:5]}).json() for _ in range(2)
    )
    assert (first["query_vector"], second["query_vector"]) == ("store", "cache")
    assert "encode" not in first["timings_ms"] and first["degraded"] is False
    assert 'shoprank_query_vectors_total{endpoint="rank",source="store"}' in live_server.get("/metrics").text
    feed = live_server.post("/rank", {"item_ids": items[:3], "explain": True}).json()  # no query: a feed
    assert len(feed["results"]) == 3 and "reasons" in feed["results"][0]


def _clicker(env) -> str:
    """The packaged user with the most recent clicks."""
    users = pd.read_parquet(env.bundle / "users.parquet")
    return str(users.loc[users["recent_items"].map(lambda v: 0 if v is None else len(v)).idxmax(), "user_id"])


@pytest.mark.slow
@pytest.mark.integration
def test_recommend_serves_a_feed_from_the_shoppers_clicks_and_takes_clicks_on_it(live_server, serving_env):
    clicker = _clicker(serving_env)
    r = live_server.post("/recommend", {"user_id": serving_env.user_id(clicker), "k": 8})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["user_known"] is True and body["history"] > 0 and body["query_vector"] is None
    results = body["results"]
    assert [x["position"] for x in results] == list(range(1, 9)) and any(x["reasons"] for x in results)
    assert {s for x in results for s in x["retrieval"]["sources"]} & {"co_clicked", "similar"}
    served = _served(serving_env, body["request_id"]).sort_values("position")
    assert served["item_id"].tolist() == [x["item_id"] for x in results]
    assert (served["query"] == "").all() and (served["user_id"] == clicker).all()
    item = results[1]["item_id"]
    click = live_server.post(
        "/feedback",
        {
            "request_id": body["request_id"],
            "item_id": item,
            "event": "click",
            "feedback_token": results[1]["feedback_token"],
        },
    )
    assert click.status_code == 200 and click.json()["verified"] is True, click.text
    events = _served(serving_env, body["request_id"])
    row = events[events["event"] == "click"].iloc[0]
    assert (row["item_id"], row["position"], row["query"], row["user_id"]) == (item, 2, "", clicker)
    cold = live_server.post("/recommend", {"user_id": "user_never_seen"}).json()
    assert cold["user_known"] is False and cold["history"] == 0 and len(cold["results"]) == 20
    assert {s for x in cold["results"] for s in x["retrieval"]["sources"]} <= {"popular", "new"}
    text = live_server.get("/metrics").text
    assert 'shoprank_requests_total{endpoint="recommend",status="200"}' in text
    assert 'shoprank_recommend_sources_total{source="popular"}' in text


@pytest.mark.slow
@pytest.mark.integration
def test_intent_gives_probabilities_and_attributes(live_server):
    body = live_server.post("/intent", {"query": "cheap red cotton t-shirt under 30"}).json()
    assert body["intent"] in body["probabilities"]
    assert sum(body["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert body["attributes"]["price_max"]["value"] == 30.0
    assert body["degraded"] is False


@pytest.mark.slow
@pytest.mark.integration
def test_feedback_is_joined_to_what_was_served(live_server, serving_env):
    search = live_server.post("/search", {"query": "jacket", "user_id": "user_000010", "k": 5}).json()
    third = search["results"][2]
    item, token = third["item_id"], third["feedback_token"]
    sent = {"request_id": search["request_id"], "item_id": item, "feedback_token": token}
    r = live_server.post("/feedback", {**sent, "event": "click"})
    assert r.status_code == 200, r.text
    assert r.json()["stored"] and r.json()["verified"] and r.json()["position"] == 3
    buy = live_server.post("/feedback", {**sent, "event": "purchase", "position": 3})
    assert buy.status_code == 200
    events = _served(serving_env, search["request_id"])
    click = events[events["event"] == "click"].iloc[0]
    assert (
        click["item_id"] == item
        and click["position"] == 3
        and click["user_id"] == serving_env.pseudonym("user_000010")
    )
    assert set(events["event"]) == {"served", "click", "purchase"}
    not_shown = next(
        i
        for i in pd.read_parquet(serving_env.bundle / "items.parquet")["item_id"]
        if i not in {x["item_id"] for x in search["results"]}
    )
    # another item, another request, another position: the token proves none of them
    for forged in (
        {**sent, "item_id": not_shown},
        {**sent, "request_id": "r_" + "0" * 32},
        {**sent, "position": 1},
        {**sent, "feedback_token": "3." + token.split(".")[1][::-1]},
    ):
        wrong = live_server.post("/feedback", {**forged, "event": "click"})
        assert wrong.status_code == 422, forged
        assert "not served" in wrong.json()["error"] or "not where" in wrong.json()["error"]


@pytest.mark.slow
@pytest.mark.integration
def test_search_page_in_headless_chromium_records_a_click(live_server, serving_env):
    import shutil

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not (chromium and driver_path):
        missing_server("chromium and chromedriver are not installed")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=ChromeService(driver_path), options=opts)
    try:
        driver.get(live_server.url + "/ui")
        box = driver.find_element(By.ID, "q")
        box.send_keys("waterproof tent", Keys.ENTER)
        wait = WebDriverWait(driver, 30)
        wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, ".result a.title")))
        links = driver.find_elements(By.CSS_SELECTOR, ".result a.title")
        assert links and driver.find_elements(By.CSS_SELECTOR, ".result .score")
        assert driver.find_elements(By.CSS_SELECTOR, ".reasons li")
        request_id, item_id = links[0].get_attribute("data-request"), links[0].get_attribute("data-item")
        links[0].click()
        wait.until(ec.text_to_be_present_in_element((By.CSS_SELECTOR, ".result .clicked"), "click recorded"))
    finally:
        driver.quit()
    events = _served(serving_env, request_id)
    clicks = events[events["event"] == "click"]
    assert clicks["item_id"].tolist() == [item_id]


@pytest.mark.slow
@pytest.mark.integration
def test_api_key_and_online_store_down_fallback(serving_env):
    """One server with an API key and an unreachable online store (Redis on a closed port)."""
    params = serving_env.params_variant(
        "store-down", online_store="redis", redis_url=f"127.0.0.1:{free_port()}"
    )
    env = serving_env.env(SHOPRANK_PARAMS=str(params), SHOPRANK_API_KEY="s3cret")
    server = Server(env, serving_env.root).start()
    try:
        assert server.get("/health").status_code == 200  # health and readiness need no key
        ready = server.get("/ready").json()
        assert ready["ready"] and ready["online_store"] == "unreachable"
        assert "Error" not in json.dumps(ready) and "127.0.0.1" not in json.dumps(ready)  # the log has it
        for path in ("/metrics", "/service-metrics", "/openapi.json"):  # the key guards them too
            assert server.get(path).status_code == 401, path
        for path, body in (
            ("/search", {"query": "tent"}),
            ("/rank", {"item_ids": ["item_000001"]}),
            ("/recommend", {"user_id": "user_000003"}),
            ("/intent", {"query": "tent"}),
            ("/feedback", {}),
        ):
            r = server.post(path, body)
            assert r.status_code == 401 and "API key" in r.json()["error"], path
        assert server.post("/search", {"query": "tent"}, headers={"X-API-Key": "wrong"}).status_code == 401
        key = {"X-API-Key": "s3cret"}
        r = server.post("/search", {"query": "tent", "user_id": "user_000003", "k": 5}, headers=key)
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["degraded"] is True and body["fallback"] == "online_store_unreachable"
        assert len(body["results"]) == 5 and body["user_known"] is True  # the packaged user table
        logged = logged_queries(serving_env)[0]  # the store has its vector, but is down: BERT
        r = server.post("/search", {"query": logged, "k": 5}, headers=key)
        assert r.status_code == 200 and r.json()["query_vector"] == "encoder", r.text
        feed = server.post(
            "/recommend", {"user_id": serving_env.user_id(_clicker(serving_env)), "k": 5}, headers=key
        ).json()
        assert feed["degraded"] is True and feed["fallback"] == "online_store_unreachable"
        assert feed["history"] > 0 and len(feed["results"]) == 5  # the packaged user table's clicks
        items = [x["item_id"] for x in body["results"]]
        ranked = server.post(
            "/rank", {"query": "tent", "item_ids": items}, headers={"Authorization": "Bearer s3cret"}
        )
        assert ranked.status_code == 200 and ranked.json()["degraded"] is True
        assert ranked.json()["query_vector"] == "cache"  # encoded by the search above
        intent = server.post("/intent", {"query": logged_queries(serving_env)[1]}, headers=key)
        assert intent.status_code == 200 and intent.json()["query_vector"] == "encoder"
        assert (
            'shoprank_fallback_total{endpoint="search",reason="online_store_unreachable"}'
            in server.get("/metrics", headers=key).text
        )
    finally:
        server.stop()


@pytest.mark.slow
@pytest.mark.integration
def test_acknowledged_feedback_survives_a_crash_and_restart(live_server, serving_env):
    search = live_server.post("/search", {"query": "backpack", "k": 5}).json()
    items = [x["item_id"] for x in search["results"]]

    tokens = {x["item_id"]: x["feedback_token"] for x in search["results"]}

    def click(item):
        sent = {"request_id": search["request_id"], "item_id": item, "feedback_token": tokens[item]}
        r = live_server.post("/feedback", {**sent, "event": "click"})
        return r.json()["event_id"] if r.status_code == 200 else None

    with ThreadPoolExecutor(5) as pool:
        acked = [e for e in pool.map(click, items * 4) if e]
    assert len(acked) == 20
    live_server.kill()  # SIGKILL: no shutdown, no flush
    logged = set(FeedbackLog(serving_env.feedback_dir).read()["event_id"])
    assert set(acked) <= logged
    live_server.start()
    sent = {"request_id": search["request_id"], "item_id": items[0], "feedback_token": tokens[items[0]]}
    r = live_server.post("/feedback", {**sent, "event": "purchase"})
    # the new process never served it: the token (the deployment's secret survives) proves it
    assert r.status_code == 200 and r.json()["verified"] is True and r.json()["position"] == 1
    log = FeedbackLog(serving_env.feedback_dir).read()
    assert set(acked) <= set(log["event_id"]) and r.json()["event_id"] in set(log["event_id"])
