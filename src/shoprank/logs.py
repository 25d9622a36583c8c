"""Structured logging and progress bars shared by every step.

Log records are one line each, ``ts level logger event key=value ...``, or JSON lines
when ``SHOPRANK_LOG_FORMAT=json`` (what a log shipper wants from Airflow workers).
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


class _Formatter(logging.Formatter):
    def __init__(self, as_json: bool):
        super().__init__()
        self.as_json = as_json

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, Any] = getattr(record, "fields", {})
        ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        if self.as_json:
            return json.dumps(
                {
                    "ts": ts,
                    "level": record.levelname.lower(),
                    "logger": record.name,
                    "event": record.getMessage(),
                    **fields,
                },
                default=str,
            )
        kv = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{ts} {record.levelname.lower():7s} {record.name} {record.getMessage()} {kv}".rstrip()


def setup_logging(level: str | None = None) -> None:
    level = level or os.environ.get("SHOPRANK_LOG_LEVEL", "INFO")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(os.environ.get("SHOPRANK_LOG_FORMAT", "text") == "json"))
    root = logging.getLogger("shoprank")
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    root.propagate = False


def log(logger: logging.Logger, event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log ``event`` with structured ``fields``."""
    logger.log(level, event, extra={"fields": fields})


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
