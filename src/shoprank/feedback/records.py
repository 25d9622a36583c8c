"""Reading the feedback log's files record by record, setting aside what cannot be read or typed.

The log is written by the service, but anything can end up in a file: a torn line from a
crash, bytes that are not UTF-8, a hand-edited line, a number no column can hold. One such
line must never stop ingestion, on this run or any later one (the log is append-only, so
a fatal line would stay fatal). Each line is therefore decoded, parsed and type-checked on
its own; a line that fails is set aside with its reason and ``file:line``, and the good
records are typed as the ``feedback`` contract in one step.

A torn line (the text ends before its JSON value does) was never acknowledged: it is
counted, not set aside. Every other failure is a set-aside record.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shoprank.data.schema import FEEDBACK, conform, empty

FIELDS = tuple(c.name for c in FEEDBACK.columns)
_FIELD_SET = frozenset(FIELDS)
_TEXT = frozenset(c.name for c in FEEDBACK.columns if c.type in ("string", "timestamp"))
_NUMBERS = frozenset(c.name for c in FEEDBACK.columns if c.type == "float")
INT64 = (-(2**63), 2**63 - 1)
MAX_LINE_CHARS = 1 << 20  # a record is a few hundred bytes; a megabyte line is not one


@dataclass
class LogRead:
    """The typed records; the lines set aside (``line`` or the record, ``reason``, ``at``); torn lines."""

    frame: pd.DataFrame
    set_aside: list[dict[str, Any]] = field(default_factory=list)
    torn: int = 0


def _shape_problem(raw: Any) -> str | None:
    """Why a parsed line is not a record the contract can type (None when it is)."""
    if not isinstance(raw, dict):
        return f"not a JSON object (a JSON {type(raw).__name__})"
    if unknown := sorted(set(raw) - _FIELD_SET):
        return f"unknown field(s) {unknown[:5]}; a feedback record has {list(FIELDS)}"
    for name, value in raw.items():
        if value is None:
            continue
        if name in _TEXT and not isinstance(value, str):
            return f"{name} must be text, got a JSON {type(value).__name__}"
        if name == "position" and (
            isinstance(value, bool) or not isinstance(value, int) or not INT64[0] <= value <= INT64[1]
        ):
            return f"position must be a whole number within 64 bits, got {_short(value)}"
        if name in _NUMBERS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                return f"{name} must be a number, got a JSON {type(value).__name__}"
            try:
                finite = math.isfinite(value)
            except OverflowError:
                finite = False
            if not finite:
                return f"{name} must be a finite number, got {_short(value)}"
            if name == "propensity" and not 0 <= value <= 1:
                return f"propensity must be a probability in [0, 1], got {_short(value)}"
    return None


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _parse(line: bytes) -> tuple[Any, str | None, bool]:
    """(the parsed value, why it cannot be read or None, whether the line is torn)."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        return None, f"not UTF-8 text (byte 0x{line[exc.start]:02x} at offset {exc.start})", False
    if len(text) > MAX_LINE_CHARS:
        return None, f"line of {len(text):,} characters, longer than a record can be", False
    try:
        return json.loads(text), None, False
    except json.JSONDecodeError as exc:
        if exc.pos >= len(text) or exc.msg.startswith("Unterminated string"):  # a write cut short
            return None, None, True
        return None, f"not JSON ({exc.msg} at column {exc.colno})", False
    except RecursionError:
        return None, "JSON nested too deeply", False
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        return None, f"not readable JSON ({_short(str(exc), 120)})", False


def _aside(raw: Any, line: bytes, reason: str, at: str) -> dict[str, Any]:
    flat = isinstance(raw, dict) and not any(isinstance(v, dict | list) for v in raw.values())
    if flat and reason.startswith("cannot be typed"):  # its fields, as the log holds them
        return {"record": raw, "reason": reason, "at": at}
    return {"line": line.decode("utf-8", "backslashreplace")[:2000], "reason": reason, "at": at}


def read_files(paths: Iterable[Path]) -> LogRead:
    """Every record of ``paths`` (JSON lines): typed, set aside, or counted as torn."""
    rows: list[dict[str, Any]] = []
    where: list[tuple[Any, bytes, str]] = []
    out = LogRead(empty(FEEDBACK))
    for path in paths:
        with open(path, "rb") as f:
            for number, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                at = f"{path.name}:{number}"
                raw, unreadable, torn = _parse(line)
                if torn:
                    out.torn += 1
                    continue
                problem = unreadable or _shape_problem(raw)
                if problem:
                    reason = problem if unreadable else f"cannot be typed ({problem})"
                    out.set_aside.append(_aside(raw, line, reason, at))
                    continue
                rows.append(raw)
                where.append((raw, line, at))
    if rows:
        out.frame = _typed(rows, where, out.set_aside)
    return out


def _typed(rows: list[dict], where: list[tuple[Any, bytes, str]], aside: list[dict]) -> pd.DataFrame:
    """The contract frame of ``rows``; a row whose time cannot be read is set aside."""
    frame = pd.DataFrame(rows, columns=list(FIELDS))
    ts = pd.to_datetime(frame["ts"], utc=True, format="ISO8601", errors="coerce")
    bad = (ts.isna() & frame["ts"].notna()).to_numpy()
    for i in bad.nonzero()[0]:
        raw, line, at = where[i]
        aside.append(
            _aside(raw, line, f"cannot be typed (ts {_short(raw['ts'])} is not an ISO 8601 time)", at)
        )
    frame["ts"] = ts
    frame = frame[~bad].reset_index(drop=True)
    try:
        return conform(frame, FEEDBACK)
    except (ValueError, TypeError, OverflowError):  # checked above, so rare: find the rows one by one
        keep = []
        for i, (raw, line, at) in enumerate(w for w, b in zip(where, bad, strict=True) if not b):
            try:
                conform(frame.iloc[[i]], FEEDBACK)
                keep.append(i)
            except (ValueError, TypeError, OverflowError) as exc:
                aside.append(_aside(raw, line, f"cannot be typed ({type(exc).__name__}: {exc})", at))
        return conform(frame.iloc[keep].reset_index(drop=True), FEEDBACK)
