"""The ``import:`` settings checked against the contract before any file is read.

:func:`plan_tables` turns each configured table into a :class:`TablePlan`: the table's
schema (the contract's columns plus the ones ``data.columns`` declares), which step
builds which column, and constants and defaults already converted to the column's type.
Every name a setting uses is checked here; a misspelt one is an error that lists the
table's columns and the closest match. Source column names are checked once the file
is read (:mod:`shoprank.data.importer.steps`).
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Formatter
from typing import Any

import pandas as pd

from shoprank.config import Data
from shoprank.config_data import Import, ImportTable, Scalar
from shoprank.data.importer.coerce import parse
from shoprank.data.importer.problems import ImportFailed, unknown_column
from shoprank.data.schema import TABLES, TableSchema, with_declared

IMPORTABLE = ("catalog", "users", "impressions")
REQUIRED = ("catalog", "impressions")
FIRST_SEEN = "first_seen"  # a default: the entity's earliest impression
ENTITY_KEY = {"catalog": "item_id", "users": "user_id"}  # whose impressions first_seen looks at
BUILT_BY = ("labels", "constants", "template")  # steps that make a column from nothing in the source


@dataclass(frozen=True)
class TablePlan:
    name: str
    spec: ImportTable
    schema: TableSchema  # the contract's columns and the declared ones
    built: dict[str, str]  # column -> the step that builds it
    constants: dict[str, Any]  # typed values
    defaults: dict[str, Any]  # typed values, or FIRST_SEEN

    def setting(self, key: str) -> str:
        return f"import.tables.{self.name}.{key}"


def plan_tables(settings: Import, data: Data) -> dict[str, TablePlan]:
    """Check every table's settings; raise :class:`ImportFailed` naming the first bad one."""
    if not settings.tables:
        raise ImportFailed(
            "no tables configured: set import.tables in params.yaml, e.g. "
            "{catalog: {file: items.csv}, impressions: {file: log.csv}} (docs/data-contract.md)"
        )
    for name in settings.tables:
        if name not in IMPORTABLE:
            raise unknown_column("import.tables", name, IMPORTABLE, what="table")
    for name in REQUIRED:
        if name not in settings.tables:
            raise ImportFailed(f"import.tables.{name} is required: every import needs a {name} file")
    if "users" not in settings.tables and data.columns.get("users"):
        raise ImportFailed(
            f"data.columns.users declares {list(data.columns['users'])}, but import.tables has no users "
            "table to take them from"
        )
    return {name: _plan(name, spec, data) for name, spec in settings.tables.items()}


def extended_schema(name: str, data: Data) -> TableSchema:
    """The contract's table with the columns ``data.columns`` declares for it (nullable)."""
    try:
        return with_declared(TABLES[name], data.columns.get(name, {}))
    except ValueError as exc:
        raise ImportFailed(str(exc)) from None


def _plan(name: str, spec: ImportTable, data: Data) -> TablePlan:
    schema = extended_schema(name, data)
    plan = TablePlan(name, spec, schema, built={}, constants={}, defaults={})
    for key in ("columns", "labels", "timestamps", "constants", "template", "defaults"):
        for col in getattr(spec, key):
            if col not in schema.names:
                raise unknown_column(plan.setting(key), col, schema.names)
    for key in ("click", "request_id"):
        if getattr(spec, key) is not None and name != "impressions":
            raise ImportFailed(f"{plan.setting(key)}: only impressions has this setting")
    for col in spec.timestamps:
        if schema.column(col).type != "timestamp":
            raise ImportFailed(f"{plan.setting('timestamps')}.{col}: {col!r} is not a timestamp column")
    for col in spec.labels:
        if schema.column(col).type != "string":
            raise ImportFailed(f"{plan.setting('labels')}.{col}: labels build text; {col!r} is not text")
    _assign_builders(plan)
    _check_templates(plan)
    plan.constants.update({c: _typed(plan, "constants", c, v) for c, v in spec.constants.items()})
    plan.defaults.update({c: _typed(plan, "defaults", c, v) for c, v in spec.defaults.items()})
    return plan


def _assign_builders(plan: TablePlan) -> None:
    """Record which step builds each column; two steps (or a mapping and a step) may not share one."""
    spec = plan.spec
    steps: list[tuple[str, list[str]]] = [(step, list(getattr(spec, step))) for step in BUILT_BY]
    steps += [
        ("click", ["clicked"] if spec.click else []),
        ("request_id", ["request_id"] if spec.request_id else []),
    ]
    for step, cols in steps:
        for col in cols:
            if col in plan.built:
                raise ImportFailed(
                    f"{plan.setting(step)}: {col!r} is already built by {plan.setting(plan.built[col])}"
                )
            if col in spec.columns:
                raise ImportFailed(
                    f"{plan.setting(step)}: {col!r} is built here, so it cannot also be mapped in "
                    f"{plan.setting('columns')}"
                )
            plan.built[col] = step


def _check_templates(plan: TablePlan) -> None:
    """Placeholders name columns of the table that exist when templates run (not request_id)."""
    order = list(plan.spec.template)
    for col, text in plan.spec.template.items():
        where = f"{plan.setting('template')}.{col}"
        try:
            fields = [f for _, f, _, _ in Formatter().parse(text) if f is not None]
        except ValueError as exc:
            raise ImportFailed(f"{where}: {text!r} is not a valid template: {exc}") from None
        for field in fields:
            if not field or field not in plan.schema.names:
                raise unknown_column(where, field, plan.schema.names, what="placeholder column")
            later = field == "request_id" or (field in order and order.index(field) >= order.index(col))
            if later:
                raise ImportFailed(f"{where}: {{{field}}} is not built yet when {col!r} is")


def _typed(plan: TablePlan, key: str, col: str, value: Scalar) -> Any:
    """``value`` as the column's type: a setting that cannot be converted is an error."""
    where = f"{plan.setting(key)}.{col}"
    if value == FIRST_SEEN and key == "defaults":
        if col != "created_at" or plan.name not in ENTITY_KEY:
            raise ImportFailed(f"{where}: first_seen fills created_at of catalog or users only")
        return FIRST_SEEN
    column = plan.schema.column(col)
    converted, problem = parse(pd.Series([value]), column.type, where)
    if problem is not None or converted.isna().all():
        raise ImportFailed(f"{where}: {value!r} is not a valid {column.type}")
    return converted.iloc[0]
