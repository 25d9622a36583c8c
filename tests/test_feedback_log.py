"""The feedback log: durable appends, torn lines from a crash, group-committed served records."""

from __future__ import annotations

import pytest

from shoprank.feedback import BackgroundAppender, FeedbackLog, FeedbackRecordError


def served(request: str, n: int) -> list[dict]:
    return [
        {"event": "served", "request_id": request, "item_id": f"i{k}", "position": k + 1} for k in range(n)
    ]


def test_append_checks_every_record_before_writing_any(tmp_path):
    log = FeedbackLog(tmp_path)
    with pytest.raises(FeedbackRecordError, match="event must be one of"):
        log.append([*served("r1", 2), {"event": "view", "request_id": "r1", "item_id": "i1"}])
    assert log.files() == [] and len(log.read()) == 0


def test_a_torn_line_never_swallows_the_next_record(tmp_path):
    log = FeedbackLog(tmp_path)
    log.append(served("r1", 1))
    with open(log.files()[0], "a") as f:
        f.write('{"event": "cli')  # a crash mid-write: never acknowledged
    (event_id,) = log.append([{"event": "click", "request_id": "r1", "item_id": "i0"}])
    frame = log.read()
    assert frame["event"].tolist() == ["served", "click"] and frame["event_id"].iloc[1] == event_id


def test_background_appender_writes_every_queued_batch(tmp_path):
    log = FeedbackLog(tmp_path)
    appender = BackgroundAppender(log)
    for r in range(50):
        appender.put(served(f"r{r}", 20))
    assert appender.flush(10)
    frame = log.read()
    assert len(frame) == 1000 and frame.groupby("request_id").size().eq(20).all()
    with pytest.raises(FeedbackRecordError):  # a bad record fails in the caller, not in the thread
        appender.put([{"event": "served", "request_id": "", "item_id": "i"}])
