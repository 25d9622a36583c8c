"""`shoprank import`: a shop's own CSV or Parquet files built into the contract's tables.

Everything is declared in ``import:`` of params.yaml (typed in
:mod:`shoprank.config_data`): per contract table its file, column mapping, time
formats, click rule, labels, constants, templates, defaults, request ids by sessions,
and what to do with invalid rows. :func:`import_tables` is the one entry point (the CLI
and the pipeline's first stage call it). The steps are in :mod:`.tables`, their order
and the rules in docs/data-contract.md.

User ids become keyed pseudonyms (:mod:`shoprank.privacy`) as soon as they are parsed,
queries lose e-mail addresses and phone numbers, and erased shoppers are left out: the
written tables hold no raw user id.

Impressions are built first: catalog and users fill ``created_at`` from the earliest
impression of each item or user (``first_seen``), and the impressions' user and item
ids are then checked against the built tables. Every table is built in memory before
any is written; :func:`~shoprank.data.io.write_tables` writes them atomically, so a bad
input leaves the output folder as it was.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from shoprank.config import Data
from shoprank.config_data import Import
from shoprank.data.importer.plan import plan_tables
from shoprank.data.importer.problems import ImportFailed
from shoprank.data.importer.report import REPORT_FILE, log_summary, write_report
from shoprank.data.importer.tables import Built, build_table, check_references, users_from_impressions
from shoprank.data.io import write_tables
from shoprank.logs import log
from shoprank.privacy import Shoppers

__all__ = ["REPORT_FILE", "ImportFailed", "Imported", "import_tables"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Imported:
    """What an import wrote: the table files, and the report (also in ``out/import_report.json``)."""

    paths: list[Path]
    report_path: Path
    report: dict[str, Any]


def import_tables(settings: Import, data: Data, out: Path, shoppers: Shoppers) -> Imported:
    """Build every configured table from the shop's files and write them, with the report, to ``out``.

    ``data``: the columns a shop declares beside the contract's (``data.columns``), kept
    in the written tables. ``shoppers``: the key that turns user ids into pseudonyms and
    the erased shoppers left out. Raises :class:`ImportFailed` before writing anything if
    a setting, a file or a row (with ``invalid_rows: fail``) is wrong.
    """
    plans = plan_tables(settings, data)
    now = pd.Timestamp.now(tz="UTC")
    impressions = build_table(plans["impressions"], settings, now, shoppers)
    first_seen = {
        key: impressions.df.groupby(key, observed=True)["ts"].min() for key in ("item_id", "user_id")
    }
    catalog = build_table(plans["catalog"], settings, now, shoppers, first_seen["item_id"])
    if "users" in plans:
        users = build_table(plans["users"], settings, now, shoppers, first_seen["user_id"])
    else:
        users = users_from_impressions(impressions)
    impressions = check_references(impressions, catalog, users)
    built = {b.name: b for b in (catalog, users, impressions)}
    out = Path(out)
    paths = write_tables(out, {name: b.df for name, b in built.items()}, contract=False)
    report = _report(built)
    report_path = write_report(out, report)
    for name, table in report["tables"].items():
        log(logger, "import_table", table=name, rows=table["rows_written"], dropped=table["rows_dropped"])
    log(logger, "import_done", out=str(out), **report["impressions"])
    return Imported(paths, report_path, report)


def _report(built: dict[str, Built]) -> dict[str, Any]:
    for b in built.values():
        b.report.rows_written = len(b.df)
    return {
        "tables": {name: b.report.as_dict() for name, b in built.items()},
        "impressions": log_summary(built["impressions"].df),
    }
