"""Structured logging and progress bars shared by every step.

Log records are one line each, ``ts level logger event key=value ...``, or JSON lines
when ``SHOPRANK_LOG_FORMAT=json`` (what a log shipper wants from Airflow workers).

A record's message is an :class:`Event`: its text is ``event key=value ...``, so a
handler that is not ours (BentoML configures the service's logging, uvicorn and pytest
their own) still prints the fields; our formatter takes the event and the fields apart.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")


class Event:
    """A log message with its structured fields: rendered lazily, only when a handler prints it."""

    __slots__ = ("event", "fields")

    def __init__(self, event: str, fields: dict[str, Any]):
        self.event, self.fields = event, fields

    def __str__(self) -> str:
        kv = " ".join(f"{k}={v}" for k, v in self.fields.items())
        return f"{self.event} {kv}".rstrip()


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        msg = record.msg
        event, fields = (msg.event, msg.fields) if isinstance(msg, Event) else (record.getMessage(), {})
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        trace = self.formatException(record.exc_info) if record.exc_info else None
        if self.as_json:
            extra = {"traceback": trace} if trace else {}
            return json.dumps(
                {
                    "ts": ts,
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "event": event,
                    **fields,
                    **extra,
                },
                default=str,
            )
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        line = f"{ts} {record.levelname.lower():7s} {record.name} {event} {kv}".rstrip()
        return f"{line}\n{trace}" if trace else line


def setup_logging(level: str | None = None) -> None:
    level = level or os.environ.get("SHOPRANK_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(os.environ.get("SHOPRANK_LOG_FORMAT", "text") == "json"))
    root = logging.getLogger("shoprank")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def log(
    logger: logging.Logger, event: str, level: int = logging.INFO, exc_info: bool = False, **fields: Any
) -> None:
    """Log ``event`` with structured ``fields`` (and the traceback being handled, with ``exc_info``)."""
    logger.log(level, Event(event, fields), exc_info=exc_info)


@contextmanager
def timed(logger: logging.Logger, event: str, **fields: Any) -> Iterator[dict[str, Any]]:
    """Log ``event`` with its duration; the yielded dict collects more fields."""
    extra: dict[str, Any] = {}
    start = time.perf_counter()
    yield extra
    log(logger, event, seconds=round(time.perf_counter() - start, 3), **fields, **extra)


def progress(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on an interactive terminal; silently otherwise."""
    if not sys.stderr.isatty() or os.environ.get("SHOPRANK_NO_PROGRESS"):
        yield from items
        return
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task(description, total=total)
        for item in items:
            yield item
            bar.advance(task)
