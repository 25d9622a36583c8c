"""A catalogue that stays fresh: items listed, changed and delisted after packaging, served at once.

The in-process Ranker on the packaged tiny champion (``serving_env``), with an updates
folder of its own so that other modules' rankers never see these items.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shoprank.data.updates import submit
from shoprank.ranking.swap import SwapLock
from tests.test_catalog_updates import catalog_row, write_jsonl


def test_the_swap_lock_keeps_a_swap_out_while_a_request_is_in_flight():
    lock, reading, release, swapped = SwapLock(), threading.Event(), threading.Event(), threading.Event()

    def request():
        with lock.reading(), lock.reading():  # a request may call another one
            reading.set()
            release.wait(10)

    def swap():
        with lock.writing():
            swapped.set()

    reader, writer = threading.Thread(target=request), threading.Thread(target=swap)
    reader.start()
    assert reading.wait(10)
    writer.start()
    writer.join(0.3)
    assert not swapped.is_set()  # the request holds it
    release.set()
    writer.join(10)
    reader.join(10)
    assert swapped.is_set()


# ---- the service: an in-process Ranker on the packaged tiny champion


@pytest.fixture(scope="module")
def updates(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("catalog_updates")


@pytest.fixture(scope="module")
def ranker(serving_env, updates):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    params = load_params(serving_env.params_file)
    params = params.model_copy(update={"paths": params.paths.model_copy(update={"catalog_updates": updates})})
    # every candidate on the page (retrieve_n <= k), no background refresh during the tests
    settings = params.serve.model_copy(
        update={"feature_ttl_s": 600.0, "catalog_refresh_s": 0.0, "retrieve_n": 40, "explore_share": 0.5}
    )
    ranker = Ranker(serving_env.bundle, params, settings=settings)
    yield ranker
    ranker.stop_refresh()


@pytest.fixture(scope="module")
def shop_catalog(serving_env) -> pd.DataFrame:
    """The catalog the bundle was built from: full contract rows of known items."""
    return pd.read_parquet(Path(serving_env.raw["paths"]["raw"]) / "catalog.parquet")


def push(ranker, updates: Path, rows: list[dict]) -> dict:
    """Rows through the CLI's step into the folder, then one refresh of the ranker."""
    source = write_jsonl(updates.parent / f"push-{len(list(updates.glob('*')))}.jsonl", rows)
    assert not submit(source, updates)["rejected"]
    return ranker.refresh_catalog()


def ids(answer: dict) -> list[str]:
    return [r["item_id"] for r in answer["results"]]


@pytest.mark.slow
@pytest.mark.integration
def test_a_new_item_is_searched_recommended_and_flagged_new_after_one_refresh(ranker, updates):
    from shoprank.retrieval.history import Shopper, new

    before = len(ranker.catalog)
    report = push(ranker, updates, [catalog_row("new_tent_1", "Zorblax ultralight trail tent")])
    assert report["listed"] == 1 and report["changed"] == 0 and not report["rejected"]
    row = ranker.row_of["new_tent_1"]
    assert row == before  # appended: every other item keeps its row
    assert ranker.catalog.is_new[row] == 1
    # its vector: the bundle's encoder over the text the features step embeds (title, then description)
    want = ranker.encoder.encode(
        ["Zorblax ultralight trail tent. Zorblax ultralight trail tent, listed today"]
    )
    assert np.allclose(ranker.vectors[row], want[0], atol=1e-5)

    found = ranker.search("zorblax ultralight tent", k=40)
    hit = next(r for r in found["results"] if r["item_id"] == "new_tent_1")
    assert hit["new"] is True and hit["title"] == "Zorblax ultralight trail tent" and hit["price"] == 149.0
    assert new(ranker.feed, Shopper(None, np.zeros(0, np.int64)), 5, None)[0] == row  # newest first
    feed = ranker.recommend("user_not_in_the_batch", k=40)
    fed = next(r for r in feed["results"] if r["item_id"] == "new_tent_1")
    assert "new" in fed["retrieval"]["sources"] and fed["new"] is True


@pytest.mark.slow
@pytest.mark.integration
def test_a_new_item_is_scored_by_the_model_and_can_fill_an_exploration_slot(ranker, updates):
    from shoprank.models.preprocess import UNKNOWN
    from shoprank.ranking.ranker import new_request_id

    push(ranker, updates, [catalog_row("new_tent_2", "Zorblax family dome tent")])
    row = ranker.row_of["new_tent_2"]
    old = np.flatnonzero(ranker.catalog.is_new == 0)[:5]
    rows = np.array([*old, row])
    s = ranker.score(rows, "family dome tent", None, new_request_id(), {})
    assert np.isfinite(s.scores).all() and "popularity_scores" not in s.fallback  # the model scored it
    assert np.isfinite(ranker.scorer.predict(ranker.frame_of(s))).all()  # the pandas path too
    if ranker.fast is not None and ranker.fast.spec.item_id in ranker.fast.item_cat:
        codes = ranker.fast._item_arrays()[0]
        assert codes[row, ranker.fast.item_cat.index(ranker.fast.spec.item_id)] == UNKNOWN
    s.scores[-1] = s.scores.min() / 2  # exploitation alone would leave it out of a page of 4
    page = ranker.arrange(s, 4)
    assert 5 in page.order[page.explored].tolist()  # the new item, index 5 of the candidates, explores
    assert 0 < page.propensity[page.order == 5][0] <= 1  # with the probability of its draw


@pytest.mark.slow
@pytest.mark.integration
def test_a_changed_price_shows_in_results_and_outlives_the_stores_refresh(ranker, updates, shop_catalog):
    item = shop_catalog.iloc[7]
    changed = {**item.to_dict(), "price": 4321.5, "created_at": item["created_at"].isoformat()}
    report = push(ranker, updates, [changed])
    assert report["changed"] == 1 and report["listed"] == 0
    row = ranker.row_of[item["item_id"]]
    found = ranker.search(str(item["title"]), k=40, filters={"price_min": 4321.0, "price_max": 4322.0})
    assert ids(found) == [item["item_id"]] and found["results"][0]["price"] == 4321.5
    ranker.features.refresh_all()  # the online store still has the packaged price
    assert ranker.features.values.loc[row, "price"] == pytest.approx(4321.5)
    assert ranker.features.values.loc[row, "log_price"] == pytest.approx(np.log1p(4321.5))


@pytest.mark.slow
@pytest.mark.integration
def test_a_delisted_item_is_never_returned_until_listed_again(ranker, updates, shop_catalog):
    from shoprank.ranking.requests import BadRequest, FeedbackBody, RankBody, parse

    top = str(ranker.item_ids[ranker.feed.popular_order[0]])  # every feed of a new shopper has it
    title = str(ranker.items.loc[ranker.row_of[top], "title"])
    assert top in ids(ranker.recommend("user_not_in_the_batch", k=40))
    assert top in ids(ranker.search(title, k=40))
    report = push(
        ranker, updates, [{"item_id": top, "delisted": 1}, {"item_id": "never_listed", "delisted": 1}]
    )
    assert report["delisted"] == 1 and report["unknown_delisted"] == 1
    assert top not in ids(ranker.recommend("user_not_in_the_batch", k=40))
    assert top not in ids(ranker.search(title, k=40))
    with pytest.raises(BadRequest) as refused:
        parse(RankBody, {"query": "x", "item_ids": [top]}, ranker.request_rules)
    assert refused.value.status == 404
    click = {"request_id": "r_" + "0" * 32, "item_id": top, "event": "click", "feedback_token": "t" * 16}
    assert parse(FeedbackBody, click, ranker.request_rules).item_id == top  # a click on what was shown
    again = shop_catalog.loc[shop_catalog["item_id"] == top].iloc[0].to_dict()
    push(ranker, updates, [{**again, "created_at": again["created_at"].isoformat()}])
    assert top in ids(ranker.search(title, k=40))


@pytest.mark.slow
@pytest.mark.integration
def test_bad_rows_and_files_are_rejected_with_their_reason_and_the_rest_is_applied(ranker, updates):
    write_jsonl(
        updates / "from-the-shop.jsonl",
        [catalog_row("new_tent_3", "Zorblax tunnel tent"), catalog_row("new_tent_4", "Bad tent", price=0)],
    )
    (updates / "broken.parquet").write_bytes(b"not parquet")
    report = ranker.refresh_catalog()
    assert report["listed"] == 1 and "new_tent_3" in ranker.row_of and "new_tent_4" not in ranker.row_of
    rows = {(r["file"], r["row"]): r["problems"] for r in report["rejected"]}
    assert rows[("from-the-shop.jsonl", 2)] == ["column 'price': values must be > 0 (got 0.0)"]
    assert "cannot be read" in rows[("broken.parquet", None)][0]
    assert ranker.search("zorblax tunnel tent", k=40)["results"]  # the service goes on
    assert ranker.refresh_catalog()["files"] == []  # applied once; a file is read again only if rewritten


@pytest.mark.slow
@pytest.mark.integration
def test_files_older_than_the_bundles_catalogue_are_taken_to_be_in_it(ranker, updates):
    assert ranker.manifest["catalog_as_of"]  # the validation time of the bundle's batch
    old = write_jsonl(updates / "old.jsonl", [catalog_row("new_tent_old", "Zorblax old tent")])
    then = (ranker.catalog_updates.since or 0) / 1e9 - 3600
    os.utime(old, (then, then))
    assert "old.jsonl" not in ranker.refresh_catalog()["files"] and "new_tent_old" not in ranker.row_of


@pytest.mark.slow
@pytest.mark.integration
def test_refreshes_never_break_the_requests_in_flight(ranker, updates):
    errors: list[BaseException] = []
    answers: list[dict] = []
    done = threading.Event()

    def client(n: int):
        while not done.is_set():
            try:
                answers.append(ranker.search("zorblax tent", k=10, filters={"price_max": 5000}))
                answers.append(ranker.recommend(f"user_client_{n}", k=10))
            except BaseException as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(exc)
                return

    clients = [threading.Thread(target=client, args=(n,)) for n in range(3)]
    for c in clients:
        c.start()
    try:
        for i in range(4):
            push(ranker, updates, [catalog_row(f"new_busy_{i}", f"Zorblax busy tent {i}")])
    finally:
        done.set()
        for c in clients:
            c.join(60)
    assert not errors, errors
    assert answers and all(r["item_id"] in ranker.row_of for a in answers for r in a["results"])
    assert {f"new_busy_{i}" for i in range(4)} <= set(ranker.row_of)


@pytest.mark.slow
@pytest.mark.integration
def test_the_refresh_endpoint_needs_the_key_and_applies_the_updates(ranker, updates):
    from starlette.testclient import TestClient

    from shoprank.ranking.http import create_app

    client = TestClient(create_app(ranker=ranker, api_key="s3cret"))
    write_jsonl(updates / "via-http.jsonl", [catalog_row("new_tent_http", "Zorblax tent by call")])
    assert client.post("/catalog/refresh", json={}).status_code == 401
    answer = client.post("/catalog/refresh", json={}, headers={"X-API-Key": "s3cret"})
    assert answer.status_code == 200 and answer.json()["files"] == ["via-http.jsonl"]
    assert "new_tent_http" in ranker.row_of
    listed = client.post(
        "/rank", json={"query": "tent", "item_ids": ["new_tent_http"]}, headers={"X-API-Key": "s3cret"}
    )
    assert listed.status_code == 200 and listed.json()["order"] == ["new_tent_http"]
