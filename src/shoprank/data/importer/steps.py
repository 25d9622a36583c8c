"""The steps that build one table from its source rows, in the order docs/data-contract.md gives.

Each step takes the table so far (``df``, whose index labels are the source rows) and
returns it with more columns, plus the :class:`Problem` s it found; the source frame
``raw`` is read through ``df.index``, so rows dropped earlier stay dropped.
"""

from __future__ import annotations

from string import Formatter

import numpy as np
import pandas as pd

from shoprank.data.importer.coerce import nullify, parse, to_number
from shoprank.data.importer.plan import ENTITY_KEY, FIRST_SEEN, TablePlan
from shoprank.data.importer.problems import ImportFailed, Problem, closest, unknown_column
from shoprank.data.schema import dtype_of

IMPLICIT_DEFAULTS = {("impressions", "query"): ""}  # recommendation feeds have no query


def source_references(plan: TablePlan) -> list[tuple[str, str]]:
    """(setting, source column) of every source column a setting names."""
    spec = plan.spec
    refs = [(f"{plan.setting('columns')}.{t}", s) for t, s in spec.columns.items()]
    refs += [(f"{plan.setting('labels')}.{t}", s) for t, rule in spec.labels.items() for s in rule.columns]
    if spec.click:
        refs.append((plan.setting("click.column"), spec.click.column))
    if spec.request_id and spec.request_id.column:
        refs.append((plan.setting("request_id.column"), spec.request_id.column))
    return refs


def select(raw: pd.DataFrame, plan: TablePlan, where: str) -> tuple[pd.DataFrame, list[str]]:
    """The table's columns under their contract names, and the source columns left unused."""
    for setting, source in source_references(plan):
        if source not in raw.columns:
            raise unknown_column(f"{where}: {setting}", source, raw.columns, what="source column")
    schema, mapping = plan.schema, plan.spec.columns
    selected = {}
    for col in schema.names:
        source = mapping.get(col, col)
        if col not in plan.built and source in raw.columns:
            selected[col] = raw[source]
    fills = {*plan.defaults, *(c for (t, c) in IMPLICIT_DEFAULTS if t == plan.name)}
    missing = [
        c
        for c in schema.names
        if c not in selected and c not in plan.built and c not in fills and c not in schema.optional
    ]
    if missing:
        hints = [f"{c!r}{_closest_source(mapping.get(c, c), raw.columns)}" for c in missing]
        raise ImportFailed(
            f"{where}: missing column(s) {', '.join(hints)}; available columns: {list(raw.columns)} "
            f"(map them in {plan.setting('columns')}, or set constants or defaults)"
        )
    used = {mapping.get(c, c) for c in selected} | {s for _, s in source_references(plan)}
    return pd.DataFrame(selected, index=raw.index), [c for c in raw.columns if c not in used]


def _closest_source(name: str, options: pd.Index) -> str:
    near = closest(name, [str(o) for o in options])
    return f" (closest source column: {near!r})" if near else ""


def labels(df: pd.DataFrame, raw: pd.DataFrame, plan: TablePlan) -> tuple[pd.DataFrame, list[Problem]]:
    """Text columns from 0/1 flag columns: the names of the set ones, joined by ``sep``."""
    problems: list[Problem] = []
    for col, rule in plan.spec.labels.items():
        flags = []
        for source in rule.columns:
            original = raw.loc[df.index, source]
            values, problem = parse(original, "flag", source)
            null = nullify(original).isna().to_numpy()
            problems += [problem] if problem else []
            if null.any():
                problems.append(Problem(f"column {source!r}: null, expected 0 or 1", null))
            flags.append(values.fillna(0).to_numpy(dtype=bool))
        matrix = np.column_stack(flags)
        names = np.array(rule.columns, dtype=object)
        df[col] = pd.Series([rule.sep.join(names[row]) for row in matrix], index=df.index, dtype="string")
    return df, problems


def parse_columns(df: pd.DataFrame, plan: TablePlan) -> tuple[pd.DataFrame, list[Problem]]:
    """Every selected column as its type (timestamps by their ``timestamps`` setting)."""
    problems = []
    for col in df.columns:
        source = plan.spec.columns.get(col, col) if col not in plan.built else col
        time = plan.spec.timestamps.get(col)
        setting = f"{plan.setting('timestamps')}.{col}"
        df[col], problem = parse(df[col], plan.schema.column(col).type, source, time, setting)
        problems += [problem] if problem else []
    return df, problems


def click(df: pd.DataFrame, raw: pd.DataFrame, plan: TablePlan) -> tuple[pd.DataFrame, list[Problem]]:
    """``clicked`` = 1 where the rule's column is in [min, max] or among ``values``."""
    rule = plan.spec.click
    if rule is None:
        return df, []
    source = raw.loc[df.index, rule.column]
    numbers = rule.values is None or all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in rule.values
    )
    if numbers:
        value = to_number(source)
        bad = value.isna().to_numpy()
        hit = pd.Series(True, index=df.index)
        if rule.values is not None:
            hit = value.isin([float(v) for v in rule.values])
        if rule.min is not None:
            hit &= value >= rule.min
        if rule.max is not None:
            hit &= value <= rule.max
    else:
        text = source.astype("string").str.strip()
        bad = text.isna().to_numpy()
        hit = text.isin([str(v) for v in rule.values or []]).fillna(False)
    df["clicked"] = hit.astype("int8").astype("Int8")
    expected = "a number" if numbers else "a value"
    problem = Problem(f"column {rule.column!r}: not {expected}, cannot tell a click", bad, source)
    return df, [problem]


def constants(df: pd.DataFrame, plan: TablePlan) -> pd.DataFrame:
    for col, value in plan.constants.items():
        df[col] = pd.Series([value] * len(df), index=df.index).astype(_dtype(plan, col))
    return df


def template(df: pd.DataFrame, plan: TablePlan) -> tuple[pd.DataFrame, list[Problem]]:
    """Text from other columns; a row with a null among them gets a null."""
    problems = []
    for col, text in plan.spec.template.items():
        fields = sorted({f for _, f, _, _ in Formatter().parse(text) if f})
        if absent := [f for f in fields if f not in df.columns]:
            raise ImportFailed(
                f"{plan.setting('template')}.{col}: {absent} neither in the source nor built before templates"
            )
        values = df[fields].astype(object)
        null = values.isna().any(axis=1).to_numpy()
        out: list[str | None] = []
        for row, is_null in zip(values.itertuples(index=True), null, strict=True):
            if is_null:
                out.append(None)
                continue
            try:
                out.append(text.format_map(dict(zip(fields, row[1:], strict=True))))
            except (ValueError, TypeError, KeyError, IndexError) as exc:
                raise ImportFailed(
                    f"{plan.setting('template')}.{col}: {text!r} fails on row {row[0]}: {exc}"
                ) from None
        setting = f"{plan.setting('template')}.{col}"
        df[col], problem = parse(
            pd.Series(out, index=df.index, dtype=object), plan.schema.column(col).type, setting
        )
        problems += [problem] if problem else []
    return df, problems


def defaults(
    df: pd.DataFrame, plan: TablePlan, first_seen: pd.Series | None
) -> tuple[pd.DataFrame, dict[str, int], list[Problem]]:
    """Nulls (or a whole absent column) filled; counts per column, and what stays null."""
    fills = {c: v for (t, c), v in IMPLICIT_DEFAULTS.items() if t == plan.name and c not in plan.constants}
    fills.update(plan.defaults)
    repaired: dict[str, int] = {}
    problems = []
    for col, value in fills.items():
        if col not in df.columns:
            df[col] = pd.Series(pd.NA, index=df.index, dtype=_dtype(plan, col))
        null = df[col].isna()
        if not null.any():
            continue
        if value == FIRST_SEEN:
            seen = df[ENTITY_KEY[plan.name]].map(first_seen if first_seen is not None else {})
            df[col] = df[col].fillna(seen.astype(df[col].dtype))
            still = df[col].isna().to_numpy()
            problems.append(
                Problem(f"column {col!r}: null, and no impression to take first_seen from", still)
            )
            label = f"{col} <- first_seen"
        else:
            df[col] = df[col].fillna(value)
            label = f"{col} <- {value!r}"
        repaired[label] = int((null & df[col].notna()).sum())
    return df, repaired, problems


def shown_before_listed(df: pd.DataFrame, plan: TablePlan, first_seen: pd.Series | None) -> dict[str, int]:
    """An item or user shown before its created_at was created when first shown: repaired, counted.

    Such dates contradict the log itself (a release date after the first rating, a sign-up
    after the first visit); left alone they would make the batch fail the quality gate.
    """
    if first_seen is None or "created_at" not in df.columns or plan.name not in ENTITY_KEY:
        return {}
    seen = pd.to_datetime(df[ENTITY_KEY[plan.name]].map(first_seen), utc=True)
    later = (df["created_at"] > seen).fillna(False).to_numpy(bool)
    if later.any():
        df.loc[later, "created_at"] = seen[later].astype(df["created_at"].dtype)
    return {"created_at after the first impression <- first_seen": int(later.sum())} if later.any() else {}


def _dtype(plan: TablePlan, col: str) -> str:
    """The column's dtype while a table is built: ints and flags stay nullable until the check."""
    column = plan.schema.column(col)
    return {"int": "Int64", "flag": "Int8"}.get(column.type, dtype_of(column))
