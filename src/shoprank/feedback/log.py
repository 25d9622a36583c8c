"""The feedback log: JSON lines under ``<paths.feedback>/log/``, one file per UTC day.

Durability is the contract: :meth:`FeedbackLog.append` returns only after the lines are
written with one ``write`` on an ``O_APPEND`` descriptor and ``fsync``-ed, so a record the
service acknowledged survives a crash or restart. Several worker processes may append to
the same file at once: each append is one ``write`` of whole lines, which Linux keeps
together on a local file system. A crash mid-write can leave a torn last line with no
newline; the writer starts a fresh line before its next record, and the reader skips
(and counts) such torn lines, which were never acknowledged. Any other line that cannot be
read or typed is set aside by the reader (:mod:`shoprank.feedback.records`), never fatal.

Queries are written scrubbed of e-mail addresses and phone numbers
(:func:`shoprank.privacy.scrub`); user ids arrive as pseudonyms (the service maps them).

Records follow the ``feedback`` table of the data contract (:data:`shoprank.data.schema.FEEDBACK`).
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from shoprank.feedback.records import _FIELD_SET, FIELDS, INT64, LogRead, read_files
from shoprank.logs import log
from shoprank.privacy.scrub import scrub

logger = logging.getLogger(__name__)

EVENTS = ("served", "click", "purchase")


class FeedbackRecordError(ValueError):
    """A feedback record does not fit the data contract; the message names the field."""


def _check(raw: Mapping[str, Any]) -> None:
    """Raise FeedbackRecordError naming the first field of ``raw`` that breaks the contract."""
    if not _FIELD_SET.issuperset(raw):
        unknown = sorted(set(raw) - _FIELD_SET)
        raise FeedbackRecordError(f"unknown field(s) {unknown}; a feedback record has {list(FIELDS)}")
    if raw.get("event") not in EVENTS:
        raise FeedbackRecordError(f"event must be one of {list(EVENTS)}, got {raw.get('event')!r}")
    for name in ("request_id", "item_id"):
        value = raw.get(name)
        if not isinstance(value, str) or not value:
            raise FeedbackRecordError(f"{name} must be a non-empty string, got {value!r}")
    pos = raw.get("position")
    if pos is not None and (isinstance(pos, bool) or not isinstance(pos, int) or not 1 <= pos <= INT64[1]):
        raise FeedbackRecordError(f"position must be an integer >= 1 (64 bits), got {pos!r}")


def _record(raw: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    """``raw`` checked and completed: every field, an event id, an ISO timestamp."""
    _check(raw)
    rec: dict[str, Any] = {name: raw.get(name) for name in FIELDS}
    rec["event_id"] = rec["event_id"] or uuid.uuid4().hex
    if isinstance(rec["query"], str):  # contact details typed into the search box are never kept
        rec["query"] = scrub(rec["query"])
    ts = rec["ts"]
    rec["ts"] = (pd.Timestamp(ts) if ts is not None else pd.Timestamp(now)).isoformat()
    return rec


class FeedbackLog:
    """The append-only feedback log in ``<root>/log``."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.dir = self.root / "log"

    def _file(self, now: datetime) -> Path:
        return self.dir / f"events-{now:%Y%m%d}.jsonl"

    def append(self, records: Iterable[Mapping[str, Any]], now: datetime | None = None) -> list[str]:
        """Write ``records`` durably and return their event ids.

        Every record is checked first: a bad one raises FeedbackRecordError and nothing is written.
        """
        now = now or datetime.now(UTC)
        recs = [_record(r, now) for r in records]
        if not recs:
            return []
        data = "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in recs).encode()
        self.dir.mkdir(parents=True, exist_ok=True)
        path = self._file(now)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size:  # a torn line from a crash has no newline: never glue a record onto it
                with open(path, "rb") as f:
                    f.seek(size - 1)
                    if f.read(1) != b"\n":
                        data = b"\n" + data
            written = os.write(fd, data)
            if written != len(data):  # pragma: no cover - a full disk
                raise OSError(f"{path}: wrote {written} of {len(data)} bytes")
            os.fsync(fd)
        finally:
            os.close(fd)
        return [r["event_id"] for r in recs]

    def files(self) -> list[Path]:
        return sorted(self.dir.glob("events-*.jsonl")) if self.dir.is_dir() else []

    def read(self) -> pd.DataFrame:
        """Every record as a frame with the contract's columns and types (what cannot be read is logged)."""
        return self.read_all().frame

    def read_all(self) -> LogRead:
        """The typed records, and the lines set aside or torn (:func:`.records.read_files`)."""
        got = read_files(self.files())
        if got.torn:
            log(logger, "feedback log: skipped torn lines", lines=got.torn, level=logging.WARNING)
        if got.set_aside:
            log(logger, "feedback log: unreadable records", records=len(got.set_aside), level=logging.WARNING)
        return got


class BackgroundAppender:
    """Appends records to a :class:`FeedbackLog` off the request path, group-committed.

    For records nobody acknowledges (the ``served`` events a response writes): a request
    only queues them, and one thread writes everything queued since its last write with
    one ``write`` and one ``fsync``. A crash can lose the records of the last few
    milliseconds; acknowledged feedback (clicks, purchases) never goes through here.
    :meth:`flush` waits until everything queued so far is on disk.
    """

    def __init__(self, feedback_log: FeedbackLog, max_batch: int = 10_000):
        self.log = feedback_log
        self.max_batch = max_batch
        self._queue: queue.SimpleQueue[list[Mapping[str, Any]]] = queue.SimpleQueue()
        self._pending = 0
        self._done = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="feedback-appender", daemon=True)
        self._thread.start()

    def put(self, records: list[Mapping[str, Any]]) -> None:
        now = datetime.now(UTC)
        for rec in records:  # reject a bad record in the caller, not in the writer thread
            if rec.get("ts") is None:
                _check(rec)
            else:  # a given timestamp must parse too
                _record(rec, now)
        with self._done:
            self._pending += 1
        self._queue.put(records)

    def _run(self) -> None:
        while True:
            batches = [self._queue.get()]
            while len(batches) < self.max_batch:
                try:
                    batches.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self.log.append([r for b in batches for r in b])
            except Exception as exc:  # pragma: no cover - a full disk: say so, keep serving
                log(logger, "served records not written", error=repr(exc), level=logging.ERROR)
            with self._done:
                self._pending -= len(batches)
                self._done.notify_all()

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every record queued before this call is written; False on timeout."""
        with self._done:
            return self._done.wait_for(lambda: self._pending == 0, timeout)
