"""The import report: rows read, dropped (per reason) and repaired (per column), and the log's shape.

It is returned by :func:`~shoprank.data.importer.import_tables`, logged, and written as
strict JSON to ``import_report.json`` beside the tables.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from shoprank.data.importer.problems import RowLedger
from shoprank.data.schema import MAX_ROWS_IN_MESSAGE

REPORT_FILE = "import_report.json"


@dataclass
class TableReport:
    source: str
    rows_read: int
    ledger: RowLedger
    rows_written: int = 0
    repaired: dict[str, int] = field(default_factory=dict)  # "column <- value" -> rows filled
    source_columns_dropped: list[str] = field(default_factory=list)
    declared_nulls: dict[str, int] = field(default_factory=dict)  # data.columns column -> null rows

    def as_dict(self) -> dict[str, Any]:
        dropped = {
            reason: {"rows": len(rows), "first_rows": [_plain(r) for r in rows[:MAX_ROWS_IN_MESSAGE]]}
            for reason, rows in self.ledger.dropped.items()
        }
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_written": self.rows_written,
            "rows_dropped": self.rows_read - self.rows_written,
            "dropped": dropped,
            "repaired": self.repaired,
            "source_columns_dropped": self.source_columns_dropped,
            "declared_columns_null": self.declared_nulls,
        }


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def log_summary(impressions: pd.DataFrame) -> dict[str, Any]:
    """The shape of the imported log: sizes, clicks and click-through rate."""
    clicks = int(impressions["clicked"].sum())
    out = {
        "impressions": len(impressions),
        "requests": int(impressions["request_id"].nunique()),
        "users": int(impressions["user_id"].nunique()),
        "items": int(impressions["item_id"].nunique()),
        "clicks": clicks,
        "ctr": round(clicks / len(impressions), 6),
    }
    if "purchased" in impressions:
        out["purchases"] = int(impressions["purchased"].sum())
    return out


def write_report(out: Path, report: dict[str, Any]) -> Path:
    """``out/import_report.json``, strict JSON (no NaN), replaced atomically."""
    text = json.dumps(report, indent=2, allow_nan=False)
    fd, tmp = tempfile.mkstemp(prefix=".import_report-", dir=out)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text + "\n")
        os.replace(tmp, out / REPORT_FILE)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return out / REPORT_FILE
