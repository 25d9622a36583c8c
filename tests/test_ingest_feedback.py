"""`shoprank ingest-feedback`: the feedback log -> contract impressions, bad records to quarantine."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.data.schema import IMPRESSIONS, check_table
from shoprank.feedback import FeedbackLog
from shoprank.feedback.ingest import IMPRESSIONS_FILE, STATE_FILE, ingest_feedback
from shoprank.feedback.shoppers import USERS_FILE
from tests.conftest import ROOT

NOW = datetime(2030, 1, 2, 12, tzinfo=UTC)


@pytest.fixture(scope="module")
def ids(tiny_sim) -> tuple[list[str], list[str]]:
    return list(tiny_sim.tables["catalog"]["item_id"][:10]), list(tiny_sim.tables["users"]["user_id"][:3])


def served(request: str, user: str, items: list[str], query: str | None = "red shoes") -> list[dict]:
    return [
        {"event_id": f"{request}-s{i}", "event": "served", "request_id": request, "user_id": user,
         "query": query, "item_id": item, "position": i + 1, "score": 0.5, "model_version": "v1"}
        for i, item in enumerate(items)
    ]  # fmt: skip


def event(kind: str, request: str, item: str, n: int = 0) -> dict:
    return {"event_id": f"{request}-{kind}-{item}-{n}", "event": kind, "request_id": request, "item_id": item}


def run(tmp_path: Path, raw: Path, threshold: int = 1000):
    return ingest_feedback(tmp_path / "feedback", raw, tmp_path / "quarantine", threshold)


def batch_params(tmp_path: Path, batch: Path) -> tuple[Path, dict]:
    """A params file whose paths are under ``tmp_path``, reading the raw batch ``batch``."""
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
    raw["paths"]["raw"] = str(batch)
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    return params, raw


def quarantined(tmp_path: Path) -> list[dict]:
    folders = sorted((tmp_path / "quarantine").glob("feedback-*"))
    assert len(folders) == 1, folders
    lines = (folders[0] / "records.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_empty_log_writes_an_empty_contract_table(tmp_path, tiny_batch):
    report = run(tmp_path, tiny_batch)
    table = pd.read_parquet(tmp_path / "feedback" / IMPRESSIONS_FILE)
    assert list(table.columns) == IMPRESSIONS.names and table.empty
    check_table(table, IMPRESSIONS)
    assert report.impressions == 0 and report.new_impressions == 0 and not report.ready
    assert not (tmp_path / "quarantine").exists()
    state = json.loads((tmp_path / "feedback" / STATE_FILE).read_text())
    assert state["impressions"] == 0


def test_clicks_and_purchases_join_onto_served_items(tmp_path, tiny_batch, ids):
    items, users = ids
    log = FeedbackLog(tmp_path / "feedback")
    log.append(served("r1", users[0], items[:3]), now=NOW)
    log.append(served("r2", users[1], items[3:5], query=None), now=NOW)
    log.append([event("click", "r1", items[1]), event("click", "r2", items[3])], now=NOW)
    log.append([event("purchase", "r1", items[1])], now=NOW)
    report = run(tmp_path, tiny_batch)
    table = pd.read_parquet(tmp_path / "feedback" / IMPRESSIONS_FILE)
    check_table(table, IMPRESSIONS)
    assert len(table) == 5 and report.impressions == 5 and report.quarantined == 0
    got = {(r.request_id, r.item_id): (r.clicked, r.purchased, r.position) for r in table.itertuples()}
    assert got[("r1", items[1])] == (1, 1, 2)
    assert got[("r1", items[0])] == (0, 0, 1)
    assert got[("r2", items[3])] == (1, 0, 1)
    feed = table[table["request_id"] == "r2"]
    assert (feed["query"] == "").all() and (feed["user_id"] == users[1]).all()  # a feed has the empty query
    assert table["propensity"].isna().all()  # the service logs no propensity: null is allowed
    assert (report.clicks, report.purchases) == (2, 1)


def test_bad_records_go_to_quarantine_with_a_reason(tmp_path, tiny_batch, ids):
    items, users = ids
    log = FeedbackLog(tmp_path / "feedback")
    log.append(served("r1", users[0], items[:2]), now=NOW)
    log.append(served("r9", "no-such-user", items[2:3]), now=NOW)
    log.append(served("r8", users[0], ["no-such-item"]), now=NOW)
    log.append(
        [
            event("click", "r1", items[5]),  # never served
            event("purchase", "r1", items[0]),  # no click
            event("click", "r9", items[2]),  # a shopper who signed up after the batch
        ],
        now=NOW,
    )
    with open(log.files()[0], "a") as f:  # written by hand, past the log's own checks
        f.write(json.dumps({"event_id": "x1", "ts": NOW.isoformat(), "event": "view", "request_id": "r1",
                            "item_id": items[0]}) + "\n")  # fmt: skip
        f.write('{"torn": \n')  # a torn line was never acknowledged: skipped, not quarantined
    report = run(tmp_path, tiny_batch)
    table = pd.read_parquet(tmp_path / "feedback" / IMPRESSIONS_FILE)
    assert set(table["request_id"]) == {"r1", "r9"} and len(table) == 3
    assert table.loc[table["request_id"] == "r9", "clicked"].tolist() == [1]
    shoppers = pd.read_parquet(tmp_path / "feedback" / USERS_FILE)
    assert shoppers["user_id"].tolist() == ["no-such-user"] and report.new_shoppers == 1
    assert shoppers["created_at"].tolist() == [pd.Timestamp(NOW)]  # first served
    reasons = {r["event_id"]: r["reason"] for r in quarantined(tmp_path)}
    assert reasons == {
        "r8-s0": "item_id not in the raw catalog",
        f"r1-click-{items[5]}-0": "no served impression for this request and item",
        f"r1-purchase-{items[0]}-0": "purchase without a click",
        "x1": "event must be one of ['served', 'click', 'purchase']",
    }
    assert report.quarantined == 4 and sum(report.reasons.values()) == 4
    assert report.events == 8  # nothing lost: 4 used + 4 quarantined
    again = run(tmp_path, tiny_batch)  # the same records land in the same folder
    assert again.quarantine == report.quarantine and len(quarantined(tmp_path)) == 4


def test_untyped_record_is_quarantined_not_fatal(tmp_path, tiny_batch, ids):
    items, users = ids
    log = FeedbackLog(tmp_path / "feedback")
    log.append(served("r1", users[0], items[:2]), now=NOW)
    with open(log.files()[0], "a") as f:
        f.write(json.dumps({"event_id": "x2", "ts": NOW.isoformat(), "event": "served", "request_id": "r5",
                            "user_id": users[0], "item_id": items[0], "position": "top"}) + "\n")  # fmt: skip
    report = run(tmp_path, tiny_batch)
    assert report.impressions == 2 and report.quarantined == 1
    (bad,) = quarantined(tmp_path)
    assert bad["event_id"] == "x2" and bad["reason"].startswith("cannot be typed")


def test_duplicates_are_kept_once_and_reruns_are_idempotent(tmp_path, tiny_batch, ids):
    items, users = ids
    log = FeedbackLog(tmp_path / "feedback")
    records = served("r1", users[0], items[:4]) + [event("click", "r1", items[2])]
    log.append(records, now=NOW)
    log.append(records, now=NOW)  # a retried append: the same event ids again
    dup = served("r1", users[0], items[:1])[0] | {"event_id": "other-id"}  # served twice, new id
    log.append([dup, event("click", "r1", items[2], n=1)], now=NOW)  # and a second click
    first = run(tmp_path, tiny_batch, threshold=3)
    path = tmp_path / "feedback" / IMPRESSIONS_FILE
    data = path.read_bytes()
    table = pd.read_parquet(path)
    assert len(table) == 4 and table["clicked"].sum() == 1 and first.quarantined == 0
    assert first.duplicates == 7
    assert list(table["position"]) == [1, 2, 3, 4]  # sorted
    assert (first.new_impressions, first.pending_impressions, first.ready) == (4, 4, True)
    second = run(tmp_path, tiny_batch, threshold=3)
    assert path.read_bytes() == data  # rebuilt from the whole log: the same bytes
    assert (second.impressions, second.new_impressions, second.pending_impressions) == (4, 0, 0)
    assert not second.ready
    log.append(served("r2", users[1], items[4:6]), now=NOW)
    third = run(tmp_path, tiny_batch, threshold=3)
    assert (third.impressions, third.new_impressions, third.pending_impressions, third.ready) == (
        6,
        2,
        2,
        False,
    )
    log.append(served("r3", users[1], items[6:7]), now=NOW)
    fourth = run(tmp_path, tiny_batch, threshold=3)
    assert (fourth.new_impressions, fourth.pending_impressions, fourth.ready) == (1, 3, True)


def test_served_item_already_in_raw_impressions_is_quarantined(tmp_path, tiny_batch, tiny_sim):
    imp = tiny_sim.tables["impressions"].iloc[0]
    FeedbackLog(tmp_path / "feedback").append(
        served(imp["request_id"], imp["user_id"], [imp["item_id"]]), now=NOW
    )
    report = run(tmp_path, tiny_batch)
    assert report.impressions == 0 and report.reasons == {"impression already in the raw impressions": 1}


@pytest.mark.slow
def test_cli_ingest_then_validate_includes_feedback(tmp_path, tiny_batch, ids):
    """`ingest-feedback` then `validate`: the validated batch holds raw + feedback rows (a shopper
    who signed up after the batch among them); raw untouched."""
    items, users = ids
    params, raw = batch_params(tmp_path, tiny_batch)
    FeedbackLog(tmp_path / raw["paths"]["feedback"]).append(
        served("fb1", users[0], items[:3])
        + [event("click", "fb1", items[0])]
        + served("fb2", "ps_newcomer", items[3:5])
        + [event("click", "fb2", items[4])],
        now=datetime.now(UTC),
    )
    before = (tiny_batch / "impressions.parquet").read_bytes()
    runner = CliRunner()
    out = runner.invoke(app, ["ingest-feedback", "--params", str(params)])
    assert out.exit_code == 0, out.output
    assert "5 impressions" in out.output and "new shoppers (not in the raw users): 1" in out.output
    out = runner.invoke(app, ["validate", "--params", str(params)])
    assert out.exit_code == 0, out.output
    assert (tiny_batch / "impressions.parquet").read_bytes() == before  # the raw batch is only read
    current = (Path(raw["paths"]["validated"]) / "CURRENT").read_text().strip()
    merged = pd.read_parquet(Path(raw["paths"]["validated"]) / current / "impressions.parquet")
    n_raw = len(pd.read_parquet(tiny_batch / "impressions.parquet"))
    assert len(merged) == n_raw + 5
    assert merged[merged["request_id"] == "fb1"]["clicked"].sum() == 1
    assert merged[merged["request_id"] == "fb2"]["clicked"].sum() == 1
    validated_users = pd.read_parquet(Path(raw["paths"]["validated"]) / current / "users.parquet")
    raw_users = pd.read_parquet(tiny_batch / "users.parquet")
    assert len(validated_users) == len(raw_users) + 1
    newcomer = validated_users[validated_users["user_id"] == "ps_newcomer"].iloc[0]
    assert pd.isna(newcomer["region"]) and newcomer["created_at"] <= merged["ts"].max()


def test_the_request_context_becomes_the_shops_impression_columns(tmp_path, tiny_batch, ids):
    from shoprank.inputs.declare import configure, configured_windows

    configure(configured_windows(), {"impressions": {"platform": "categorical", "basket": "numeric"}})
    items, users = ids
    log = FeedbackLog(tmp_path / "feedback")
    log.append(served("r1", users[0], items[:2]), now=NOW)  # no context: nulls
    with_ctx = served("r2", users[1], items[2:4])
    for rec in with_ctx:  # a key no longer declared is ignored; a value of the wrong kind is null
        rec["context"] = json.dumps({"platform": "ios", "basket": 3, "retired": 1})
    with_ctx[1]["context"] = json.dumps({"platform": 7, "basket": "many"})
    bad = served("r3", users[2], items[4:5])
    bad[0]["context"] = "not json"
    log.append(with_ctx + bad, now=NOW)
    report = run(tmp_path, tiny_batch)
    table = pd.read_parquet(tmp_path / "feedback" / IMPRESSIONS_FILE).set_index("item_id")
    assert report.impressions == 4 and report.quarantined == 1
    assert [r["reason"] for r in quarantined(tmp_path)] == ["context is not a JSON object"]
    assert table.loc[items[2], "platform"] == "ios" and table.loc[items[2], "basket"] == 3
    assert pd.isna(table.loc[items[3], "platform"]) and pd.isna(table.loc[items[3], "basket"])
    assert table.loc[items[:2], "platform"].isna().all() and "retired" not in table.columns


def test_a_served_item_past_the_page_is_set_aside_alone(tmp_path, tiny_batch, ids):
    items, users = ids
    log = FeedbackLog(tmp_path / "feedback")
    deep = served("r1", users[0], items[:6])  # positions 1..6 of a page of 4
    log.append(deep + [event("click", "r1", items[1]), event("click", "r1", items[5])], now=NOW)
    report = ingest_feedback(tmp_path / "feedback", tiny_batch, tmp_path / "quarantine", max_position=4)
    table = pd.read_parquet(tmp_path / "feedback" / IMPRESSIONS_FILE)
    assert sorted(table["position"]) == [1, 2, 3, 4] and table["clicked"].sum() == 1
    reasons = sorted(r["reason"] for r in quarantined(tmp_path))
    assert reasons == [
        "no served impression for this request and item",  # the click on the unseen slot
        "position beyond validate.max_position (4)",
        "position beyond validate.max_position (4)",
    ]
    assert report.impressions == 4 and report.quarantined == 3
