"""One contract table built from its file, step by step; and the checks across tables.

The steps run in this order (docs/data-contract.md): read, rename (select), labels,
timestamps (every selected column is parsed to its type here, so one run reports all
unparseable values), click, constants, template, defaults, request ids, check. After
each step that can find invalid rows, the table's :class:`RowLedger` settles them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from shoprank.config_data import Import
from shoprank.data.importer.plan import FIRST_SEEN, TablePlan
from shoprank.data.importer.problems import ImportFailed, Problem, RowLedger
from shoprank.data.importer.read import ROW_NOTE, file_format, read_source, undecodable
from shoprank.data.importer.report import TableReport
from shoprank.data.importer.sessions import request_ids
from shoprank.data.importer.steps import (
    click,
    constants,
    defaults,
    labels,
    parse_columns,
    select,
    shown_before_listed,
    template,
)
from shoprank.data.schema import (
    TABLES,
    ContractError,
    TableSchema,
    check_table,
    column_violations,
    conform,
    key_violations,
)
from shoprank.logs import log
from shoprank.privacy import Shoppers, scrub_series

logger = logging.getLogger(__name__)


@dataclass
class Built:
    """A table ready to write: rows in the schema's dtypes, and what happened on the way."""

    name: str
    schema: TableSchema
    df: pd.DataFrame
    report: TableReport
    where: str


def build_table(
    plan: TablePlan,
    settings: Import,
    now: pd.Timestamp,
    shoppers: Shoppers,
    first_seen: pd.Series | None = None,
) -> Built:
    """Read ``plan``'s file and run every step; ``first_seen``: earliest impression per entity id.

    Right after parsing, user ids become pseudonyms and queries are scrubbed (``shoppers``),
    so no later step, message about a key or request id sees the shop's own ids.
    """
    path = Path(settings.dir) / plan.spec.file
    fmt = file_format(path, settings.format)
    raw, unreadable = read_source(path, fmt)
    where = f"{path} ({plan.name}; {ROW_NOTE[fmt]})"
    ledger = RowLedger(plan.name, where, plan.spec.invalid_rows)
    ledger.unreadable(unreadable)
    report = TableReport(str(path), len(raw) + len(unreadable), ledger)
    df, report.source_columns_dropped = select(raw, plan, where)
    if report.source_columns_dropped:
        log(logger, "import_columns_dropped", table=plan.name, columns=report.source_columns_dropped)
    used = [c for c in raw.columns if c not in report.source_columns_dropped]
    df = ledger.settle(df, undecodable(raw.loc[df.index], used), "column(s) with bytes that are not text")
    df, found = labels(df, raw, plan)
    df, parsed = parse_columns(df, plan)
    df = ledger.settle(df, found + parsed, "column(s) cannot be parsed")
    df = shielded(df, shoppers)
    df, found = click(df, raw, plan)
    df = ledger.settle(df, found, "click rule problem(s)")
    df = constants(df, plan)
    df, found = template(df, plan)
    df = ledger.settle(df, found, "template problem(s)")
    df, report.repaired, found = defaults(df, plan, first_seen)
    df = ledger.settle(df, found, "column(s) left without a value")
    report.repaired |= shown_before_listed(df, plan, first_seen)
    if plan.spec.request_id is not None:
        df = ledger.settle(df, _nulls(df, plan.schema, ["user_id", "ts"]), "problem(s) before sessions")
        df["request_id"], found = request_ids(df["user_id"], df["ts"], plan.spec.request_id, raw)
        df = ledger.settle(df, found, "request id problem(s)")
    df = check_rows(df, plan.schema, ledger, now)
    declared = [c for c in plan.schema.names if c not in TABLES[plan.name].names]
    report.declared_nulls = {c: n for c in declared if (n := int(df[c].isna().sum()))}
    return Built(plan.name, plan.schema, df, report, where)


def shielded(df: pd.DataFrame, shoppers: Shoppers) -> pd.DataFrame:
    """User ids as pseudonyms, queries scrubbed, erased shoppers' rows left out."""
    if "user_id" in df:
        df["user_id"] = shoppers.pseudonymise(df["user_id"])
        df = df[shoppers.kept(df["user_id"])].copy()
    if "query" in df:
        df["query"] = scrub_series(df["query"])
    return df


def _nulls(df: pd.DataFrame, schema: TableSchema, names: list[str]) -> list[Problem]:
    return [Problem(r, m) for c in names for r, m in column_violations(df[c], schema.column(c))]


def check_rows(df: pd.DataFrame, schema: TableSchema, ledger: RowLedger, now: pd.Timestamp) -> pd.DataFrame:
    """Contract violations and times later than ``now`` settled, then duplicate keys; the table conformed."""
    problems = [
        Problem(r, m)
        for col in schema.columns
        if col.name in df
        for r, m in column_violations(df[col.name], col)
    ]
    for col in schema.columns:
        if col.type == "timestamp" and col.name in df:
            later = (df[col.name] > now).fillna(False).to_numpy(dtype=bool)
            problems.append(Problem(f"column {col.name!r}: later than the time of import", later))
    df = ledger.settle(df, problems, "contract violation(s)")
    df = ledger.settle(df, [Problem(r, m) for r, m in key_violations(df, schema)], "contract violation(s)")
    df = conform(df, schema)
    try:
        return check_table(df, schema)
    except ContractError as exc:
        raise ImportFailed(f"{ledger.where}: {exc}") from exc


def users_from_impressions(impressions: Built) -> Built:
    """A users table of the impressions' user ids, each created when first seen (no users file)."""
    schema = TABLES["users"]
    ts = impressions.df.groupby("user_id", observed=True)["ts"].min().sort_index()
    df = pd.DataFrame({"user_id": ts.index.astype("string"), "created_at": ts.to_numpy()})
    source = "impressions (user_id, created_at <- first_seen)"
    ledger = RowLedger("users", source, "fail")
    report = TableReport(source, len(df), ledger, repaired={f"created_at <- {FIRST_SEEN}": len(df)})
    return Built("users", schema, conform(df, schema), report, source)


def check_references(impressions: Built, catalog: Built, users: Built) -> Built:
    """Impressions of unknown users or items are invalid rows of impressions."""
    df = impressions.df
    problems = [
        Problem(
            f"column {col!r}: not in {table.name}", ~df[col].isin(table.df[col]).to_numpy(dtype=bool), df[col]
        )
        for col, table in (("user_id", users), ("item_id", catalog))
    ]
    impressions.df = impressions.report.ledger.settle(df, problems, "reference problem(s)")
    if not impressions.df["clicked"].any():
        raise ImportFailed(
            f"{impressions.where}: no clicks: all {len(impressions.df)} impressions have clicked = 0; "
            "check import.tables.impressions.click (or the clicked column)"
        )
    return impressions
