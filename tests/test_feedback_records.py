"""Lines of the feedback log that cannot be read or typed: set aside with a reason, never fatal."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.feedback import FeedbackLog, FeedbackRecordError
from shoprank.feedback.ingest import IMPRESSIONS_FILE
from tests.test_ingest_feedback import NOW, batch_params, event, quarantined, run, served

DEEP = 100_000  # past any recursion limit of a JSON parser


def _bad_lines(user: str, item: str) -> dict[str, bytes]:
    """Each kind of unreadable line -> its bytes (the served records are otherwise valid)."""
    rec = {"event": "served", "request_id": "bad", "user_id": user, "item_id": item, "ts": NOW.isoformat()}

    def line(i: int, **fields) -> bytes:
        return json.dumps({**rec, "event_id": f"bad{i}", "position": 1, **fields}).encode()

    return {
        "not UTF-8": line(0, query="caf\u00e9").replace(b"caf\\u00e9", b"caf\xe9"),
        "position": line(1, position=10**20),
        "nested too deeply": b'{"event_id": "bad2", "query": ' + b"[" * DEEP + b"]" * DEEP + b"}",
        "query must be text": line(3, query={"a": [[[["x"]]]]}),
        "not a JSON object": b'["served", "bad", 1]',
        "not JSON": b"served bad 1 " + item.encode(),
        "not readable JSON": b'{"event_id": "bad6", "position": ' + b"9" * 5000 + b"}",
        "score must be a finite number": line(7, score=float("inf")),
        "not an ISO 8601 time": line(8, ts="yesterday"),
        "unknown field": line(9, shopper="x"),
    }


@pytest.fixture(scope="module")
def ids(tiny_sim) -> tuple[list[str], list[str]]:
    return list(tiny_sim.tables["catalog"]["item_id"][:10]), list(tiny_sim.tables["users"]["user_id"][:3])


def test_unreadable_lines_are_quarantined_with_reason_and_place_and_the_rest_is_ingested(
    tmp_path, tiny_batch, ids
):
    items, users = ids
    log = FeedbackLog(tmp_path / "feedback")
    log.append(served("r1", users[0], items[:2]) + [event("click", "r1", items[1])], now=NOW)
    bad = _bad_lines(users[1], items[3])
    path = log.files()[0]
    with open(path, "ab") as f:
        f.write(b"\n".join(bad.values()) + b"\n")
    log.append(served("r2", users[1], items[4:5]), now=NOW)  # after the bad lines: still read
    report = run(tmp_path, tiny_batch)
    table = pd.read_parquet(tmp_path / "feedback" / IMPRESSIONS_FILE)
    assert sorted(table["request_id"]) == ["r1", "r1", "r2"] and table["clicked"].sum() == 1
    assert report.quarantined == len(bad) and report.events == 4 + len(bad)
    aside = quarantined(tmp_path)
    places = sorted(int(r["at"].split(":")[1]) for r in aside)
    assert places == list(range(4, 4 + len(bad)))  # the file's line numbers (3 good lines first)
    assert {r["at"].split(":")[0] for r in aside} == {path.name}
    for expected, r in zip(bad, sorted(aside, key=lambda r: int(r["at"].split(":")[1])), strict=True):
        assert expected in r["reason"], (expected, r["reason"])
    assert "caf\\xe9" in aside[0]["line"]  # the bad byte is shown, escaped
    again = run(tmp_path, tiny_batch)  # every later run reads the same log the same way
    assert (again.impressions, again.quarantined, again.quarantine) == (3, len(bad), report.quarantine)


def test_torn_last_line_is_counted_not_quarantined(tmp_path, tiny_batch, ids):
    items, users = ids
    log = FeedbackLog(tmp_path / "feedback")
    log.append(served("r1", users[0], items[:2]), now=NOW)
    with open(log.files()[0], "ab") as f:
        f.write(b'{"event": "served", "request_id": "r1", "item_')
    report = run(tmp_path, tiny_batch)
    assert (report.impressions, report.quarantined, report.torn) == (2, 0, 1)
    assert "torn lines skipped" in report.summary()


def test_the_log_refuses_a_position_no_column_can_hold():
    log = FeedbackLog("/nonexistent")
    with pytest.raises(FeedbackRecordError, match="position"):
        log.append([{"event": "click", "request_id": "r", "item_id": "i", "position": 10**20}])


def test_cli_ingests_past_a_bad_byte_and_reports_counts(tmp_path, tiny_batch, ids):
    items, users = ids
    params, raw = batch_params(tmp_path, tiny_batch)
    log = FeedbackLog(Path(raw["paths"]["feedback"]))
    log.append(served("r1", users[0], items[:2]), now=NOW)
    with open(log.files()[0], "ab") as f:
        f.write(b'{"event_id": "x", "query": "\xff\xfe"}\n')
    out = CliRunner().invoke(app, ["ingest-feedback", "--params", str(params)])
    assert out.exit_code == 0, out.output
    assert "2 impressions" in out.output and "quarantined: 1 record(s)" in out.output
    assert "not UTF-8 text (byte 0xff" in out.output
