"""The data contract: the tables every shoprank step reads and writes.

Each table is a :class:`TableSchema` of :class:`Column` s with a logical type, a
meaning, whether nulls are allowed and which values are. :func:`check_table` is the
one function that checks a DataFrame against a schema; its error names the table,
the column and the offending rows. docs/data-contract.md is the prose version of
this module; tests/test_schema.py checks that the two list the same columns.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

# logical type -> pandas dtype used when the contract coerces or builds a table
DTYPES = {
    "string": "string",
    "int": "int64",
    "float": "float64",
    "flag": "int8",  # 0/1
    "timestamp": "datetime64[us, UTC]",
}
MAX_ROWS_IN_MESSAGE = 5


@dataclass(frozen=True)
class Column:
    name: str
    type: str  # a key of DTYPES
    meaning: str
    nullable: bool = False
    values: tuple[str, ...] | None = None  # allowed values of a string column
    min: float | None = None  # inclusive bounds of a numeric column
    max: float | None = None
    exclusive_min: bool = False

    def allowed(self) -> str:
        if self.values is not None:
            return ", ".join(repr(v) for v in self.values)
        if self.type == "flag":
            return "0 or 1"
        if self.min is not None or self.max is not None:
            lo = "" if self.min is None else f"{'>' if self.exclusive_min else '>='} {self.min:g}"
            hi = "" if self.max is None else f"<= {self.max:g}"
            return " and ".join(s for s in (lo, hi) if s)
        return "any"


@dataclass(frozen=True)
class TableSchema:
    name: str
    meaning: str
    columns: tuple[Column, ...]
    key: tuple[str, ...] = ()  # columns whose combination is unique
    optional: frozenset[str] = field(default_factory=frozenset)  # may be absent entirely

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")


class ContractError(ValueError):
    """A table does not match its schema; the message says where."""

    def __init__(self, table: str, problems: Sequence[str]):
        self.table = table
        self.problems = list(problems)
        super().__init__(f"{table}: {len(problems)} contract violation(s)\n  " + "\n  ".join(problems))


INTENTS = ("buy", "browse", "compare", "price", "learn")

CATALOG = TableSchema(
    name="catalog",
    meaning="One row per product that can be shown.",
    key=("item_id",),
    columns=(
        Column("item_id", "string", "Stable product identifier."),
        Column("title", "string", "Product title as shown in results."),
        Column("description", "string", "Free-text product description."),
        Column(
            "category", "string", "Category path, levels joined by ' > ' (e.g. 'Shoes > Athletic Shoes')."
        ),
        Column("brand", "string", "Brand name."),
        Column("price", "float", "Current price in the shop's currency.", min=0, exclusive_min=True),
        Column("attributes", "string", "Known structured attributes as a JSON object; may be incomplete."),
        Column("created_at", "timestamp", "When the product was listed (UTC)."),
    ),
)

USERS = TableSchema(
    name="users",
    meaning="One row per shopper.",
    key=("user_id",),
    optional=frozenset({"region", "device"}),
    columns=(
        Column(
            "user_id", "string", "Stable shopper identifier: a keyed pseudonym of the shop's id (ps_...)."
        ),
        Column("created_at", "timestamp", "Sign-up time (UTC)."),
        Column("region", "string", "Coarse region of the shopper.", nullable=True),
        Column("device", "string", "Main device.", nullable=True, values=("mobile", "desktop", "app")),
    ),
)

IMPRESSIONS = TableSchema(
    name="impressions",
    meaning="One row per product shown in a response: what was shown, where, and what happened.",
    key=("request_id", "item_id"),
    optional=frozenset({"propensity", "purchased"}),
    columns=(
        Column("request_id", "string", "Identifier of the search or feed request."),
        Column("ts", "timestamp", "When the response was served (UTC)."),
        Column("user_id", "string", "Who asked; must exist in users."),
        Column("query", "string", "Query text; the empty string for recommendation feeds."),
        Column("item_id", "string", "What was shown; must exist in catalog."),
        Column("position", "int", "1-based rank on the page.", min=1),
        Column("clicked", "flag", "1 if the shopper clicked the item."),
        Column("purchased", "flag", "1 if the shopper bought it after clicking (implies clicked)."),
        Column(
            "propensity",
            "float",
            "Probability that the logging policy put this item at this position.",
            nullable=True,
            min=0,
            max=1,
            exclusive_min=True,
        ),
    ),
)

FEEDBACK = TableSchema(
    name="feedback",
    meaning="Append-only log the ranking service writes: responses served, clicks, purchases.",
    key=("event_id",),
    columns=(
        Column("event_id", "string", "Unique identifier of this log record."),
        Column("ts", "timestamp", "When the event was recorded (UTC)."),
        Column("event", "string", "What happened.", values=("served", "click", "purchase")),
        Column("request_id", "string", "The response this event belongs to."),
        Column("user_id", "string", "Who asked, if known.", nullable=True),
        Column("query", "string", "Query text of the request; empty for feeds.", nullable=True),
        Column("item_id", "string", "The product served, clicked or bought."),
        Column("position", "int", "1-based rank at which the item was served.", nullable=True, min=1),
        Column("score", "float", "Model score the service gave the item.", nullable=True),
        Column("model_version", "string", "Champion that served the response.", nullable=True),
        Column(
            "context",
            "string",
            "The request's values of the shop's impression columns (data.columns.impressions), "
            "a JSON object; null when it sent none.",
            nullable=True,
        ),
        Column("experiment", "string", "The online experiment the response was part of.", nullable=True),
        Column(
            "arm",
            "string",
            "The experiment's arm that placed the item (A/B: the request's arm; interleaving: "
            "the team that picked it); null outside experiments and for exploration slots.",
            nullable=True,
        ),
        Column(
            "propensity",
            "float",
            "Probability that the service's own randomisation put the item at its position: "
            "A/B, over the arm draw (the shares of the arms whose page has it there); an "
            "exploration slot, its draw; interleaving, the coin toss of its round; 1 where "
            "nothing random decided.",
            nullable=True,
            min=0,
            max=1,
        ),
    ),
    optional=frozenset({"context", "experiment", "arm", "propensity"}),  # older logs lack them
)

TABLES: dict[str, TableSchema] = {t.name: t for t in (CATALOG, USERS, IMPRESSIONS, FEEDBACK)}


def _rows(mask: np.ndarray | pd.Series, index: pd.Index) -> str:
    hits = index[np.asarray(mask, dtype=bool)]
    shown = ", ".join(str(i) for i in hits[:MAX_ROWS_IN_MESSAGE])
    more = f" and {len(hits) - MAX_ROWS_IN_MESSAGE} more" if len(hits) > MAX_ROWS_IN_MESSAGE else ""
    return f"{len(hits)} row(s): {shown}{more}"


def _type_ok(series: pd.Series, type_: str) -> bool:
    d = series.dtype
    if type_ == "string":
        if pd.api.types.is_object_dtype(
            d
        ):  # is_string_dtype(object) is True whatever the values: look at them
            return bool(series.dropna().map(lambda v: isinstance(v, str)).all())
        return pd.api.types.is_string_dtype(d)
    if type_ == "timestamp":
        return isinstance(d, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(d)
    if type_ == "float":
        return pd.api.types.is_float_dtype(d) or pd.api.types.is_integer_dtype(d)
    return pd.api.types.is_integer_dtype(d) or pd.api.types.is_bool_dtype(d)  # int, flag


def check_column(series: pd.Series, col: Column) -> list[str]:
    """Problems of one column; empty when it conforms."""
    if not _type_ok(series, col.type):
        return [f"column {col.name!r}: expected {col.type}, found dtype {series.dtype}"]
    return [f"{reason}, {_rows(mask, series.index)}" for reason, mask in column_violations(series, col)]


def column_violations(series: pd.Series, col: Column) -> list[tuple[str, np.ndarray]]:
    """What is wrong with a column of the right type, and on which rows (one mask per problem)."""
    where = f"column {col.name!r}"
    problems = []
    null = series.isna().to_numpy()
    if null.any() and not col.nullable:
        problems.append((f"{where}: nulls not allowed", null))
    values = series[~null]
    bad = None
    if col.values is not None:
        bad = ~values.isin(col.values)
    elif col.type == "flag":
        bad = ~values.isin((0, 1))
    elif col.min is not None or col.max is not None:
        v = values.astype("float64")
        bad = pd.Series(False, index=values.index)
        if col.min is not None:
            bad |= (v <= col.min) if col.exclusive_min else (v < col.min)
        if col.max is not None:
            bad |= v > col.max
        bad |= ~np.isfinite(v)
    if bad is not None and bad.any():
        mask = np.zeros(len(series), dtype=bool)
        mask[~null] = bad.to_numpy(dtype=bool)
        problems.append((f"{where}: values must be {col.allowed()}", mask))
    return problems


def key_violations(df: pd.DataFrame, schema: TableSchema) -> list[tuple[str, np.ndarray]]:
    """Rows that repeat a key (all but the first), and purchases without a click."""
    problems = []
    if schema.key and all(k in df.columns for k in schema.key):
        dup = df.duplicated(list(schema.key), keep="first").to_numpy()
        if dup.any():
            problems.append((f"key {list(schema.key)} not unique", dup))
    if schema.name == IMPRESSIONS.name and {"clicked", "purchased"} <= set(df.columns):
        bad = ((df["purchased"] == 1) & (df["clicked"] != 1)).fillna(False)  # nullable flags: NA is no hit
        if bad.any():
            problems.append(("column 'purchased': purchase without click", bad.to_numpy(dtype=bool)))
    return problems


def check_table(df: pd.DataFrame, schema: TableSchema, *, extra_ok: bool = True) -> pd.DataFrame:
    """Check ``df`` against ``schema``; return it unchanged or raise :class:`ContractError`.

    Problems are collected across all columns so one run reports everything wrong.
    Row numbers in the message are the DataFrame's index labels.
    """
    problems: list[str] = []
    missing = [c for c in schema.names if c not in df.columns and c not in schema.optional]
    if missing:
        problems.append(f"missing column(s) {missing}; found {list(df.columns)}")
    if not extra_ok and (extra := [c for c in df.columns if c not in schema.names]):
        problems.append(f"unexpected column(s) {extra}")
    for col in schema.columns:
        if col.name in df.columns:
            problems += check_column(df[col.name], col)
    problems += [f"{reason}, {_rows(mask, df.index)}" for reason, mask in key_violations(df, schema)]
    if problems:
        raise ContractError(schema.name, problems)
    return df


KINDS = {"numeric": "float", "categorical": "string"}  # data.columns kinds -> contract types


def with_declared(base: TableSchema, declared: Mapping[str, str]) -> TableSchema:
    """The contract's table with the columns a shop declares for it (data.columns: name -> kind), nullable."""
    if clash := [c for c in declared if c in base.names]:
        raise ValueError(
            f"data.columns.{base.name}: {clash} are contract columns already; declare other names"
        )
    extra = tuple(
        Column(col, KINDS[kind], f"Declared in data.columns ({kind}).", nullable=True)
        for col, kind in declared.items()
    )
    return TableSchema(base.name, base.meaning, base.columns + extra, base.key, base.optional)


def conform(df: pd.DataFrame, schema: TableSchema) -> pd.DataFrame:
    """Cast the contract's columns to their canonical dtypes and order (no checking)."""
    cols = [c for c in schema.columns if c.name in df.columns]
    return pd.DataFrame({c.name: _cast(df[c.name], c) for c in cols}, index=df.index)


def _cast(series: pd.Series, col: Column) -> pd.Series:
    # astype cannot add a time zone: naive timestamps are taken as UTC, as the contract says
    if col.type == "timestamp" and pd.api.types.is_datetime64_dtype(series.dtype):
        series = series.dt.tz_localize("UTC")
    return series.astype(dtype_of(col))


def dtype_of(col: Column) -> str:
    """The canonical pandas dtype of ``col``; nullable ints use Int64, as int64 cannot hold a null."""
    return "Int64" if col.type == "int" and col.nullable else DTYPES[col.type]


def empty(schema: TableSchema, columns: Iterable[str] | None = None) -> pd.DataFrame:
    names = list(columns) if columns is not None else schema.names
    return pd.DataFrame({n: pd.Series(dtype=dtype_of(schema.column(n))) for n in names})
