"""What goes wrong in an import: settings errors, and invalid rows that are fatal or dropped.

Every problem with rows is a :class:`Problem` (a reason and a row mask). A table's
:class:`RowLedger` settles them as its ``invalid_rows`` setting says: ``fail`` raises
:class:`ImportFailed` with every problem, its rows and values; ``drop`` removes the rows,
counts them per reason for the import report and logs a warning. Nothing is dropped
silently, and a table that loses every row fails.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from shoprank.data.schema import MAX_ROWS_IN_MESSAGE
from shoprank.logs import log

logger = logging.getLogger(__name__)


class ImportFailed(ValueError):
    """An external table cannot be mapped into the contract; the message says where and why."""


def closest(name: str, options: Iterable[str]) -> str | None:
    """The one of ``options`` that ``name`` looks like a misspelling of, if any."""
    match = difflib.get_close_matches(name, [str(o) for o in options], n=1, cutoff=0.6)
    return match[0] if match else None


def unknown_column(setting: str, name: str, options: Iterable[str], what: str = "column") -> ImportFailed:
    """The error for a setting that names a column that is not there."""
    options = [str(o) for o in options]
    near = closest(name, options)
    hint = f"; closest: {near!r}" if near else ""
    return ImportFailed(f"{setting}: unknown {what} {name!r}{hint}; available: {options}")


def plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value  # 0.5, not np.float64(0.5)


@dataclass
class Problem:
    """Rows of a table that break a rule; ``values`` (the offending source values) are shown when given."""

    reason: str
    mask: np.ndarray
    values: pd.Series | None = None

    def describe(self, index: pd.Index) -> str:
        rows = index[self.mask]
        if self.values is not None:
            shown = ", ".join(f"{r}={plain(self.values[r])!r}" for r in rows[:MAX_ROWS_IN_MESSAGE])
            return f"{self.reason}: {len(rows)} value(s); first rows: {shown}"
        shown = ", ".join(str(r) for r in rows[:MAX_ROWS_IN_MESSAGE])
        more = f" and {len(rows) - MAX_ROWS_IN_MESSAGE} more" if len(rows) > MAX_ROWS_IN_MESSAGE else ""
        return f"{self.reason}, {len(rows)} row(s): {shown}{more}"


@dataclass
class RowLedger:
    """Invalid rows of one table: fatal (``fail``) or dropped and counted per reason (``drop``)."""

    table: str
    where: str
    mode: str
    dropped: dict[str, list[Any]] = field(default_factory=dict)  # reason -> row labels

    def unreadable(self, rows: dict[Any, str]) -> None:
        """Rows of the file that could not be read at all (row label -> reason): fatal or counted."""
        if not rows:
            return
        if self.mode == "fail":
            shown = "\n  ".join(f"row {r}: {why}" for r, why in list(rows.items())[:MAX_ROWS_IN_MESSAGE])
            more = (
                f"\n  and {len(rows) - MAX_ROWS_IN_MESSAGE} more" if len(rows) > MAX_ROWS_IN_MESSAGE else ""
            )
            raise ImportFailed(
                f"{self.where}: {len(rows)} row(s) cannot be read\n  {shown}{more}\n"
                f"(import.tables.{self.table}.invalid_rows: drop drops such rows and reports them)"
            )
        for row, why in rows.items():
            self.dropped.setdefault(why, []).append(row)
        log(
            logger,
            "import_rows_dropped",
            logging.WARNING,
            table=self.table,
            reason="unreadable",
            rows=len(rows),
        )

    def settle(self, df: pd.DataFrame, problems: list[Problem], heading: str) -> pd.DataFrame:
        """``df`` without the rows of ``problems`` (drop), or :class:`ImportFailed` (fail)."""
        problems = [p for p in problems if p.mask.any()]
        if not problems:
            return df
        lines = "\n  ".join(p.describe(df.index) for p in problems)
        if self.mode == "fail":
            raise ImportFailed(
                f"{self.where}: {len(problems)} {heading}\n  {lines}\n"
                f"(import.tables.{self.table}.invalid_rows: drop drops such rows and reports them)"
            )
        drop = np.logical_or.reduce([p.mask for p in problems])
        if drop.all():
            raise ImportFailed(f"{self.where}: every row is invalid, nothing left to import\n  {lines}")
        for p in problems:
            rows = df.index[p.mask].tolist()
            self.dropped.setdefault(p.reason, []).extend(rows)
            log(
                logger,
                "import_rows_dropped",
                logging.WARNING,
                table=self.table,
                reason=p.reason,
                rows=len(rows),
            )
        return df[~drop].copy()
