"""The Great Expectations suites of the gate, built in code from the data contract.

Column expectations (exists, type, nulls, allowed values, ranges, keys) are derived from
:mod:`shoprank.data.schema`, so the gate and the contract cannot drift. Checks that need
more than one table or an earlier batch (CTR bounds, window, row counts, references) get
their thresholds from the batch and :class:`~shoprank.config.Validate`.

Every expectation carries ``meta = {table, column, check}``: ``check`` is the readable
name that failure messages and Data Docs show. Great Expectations is imported inside the
functions, never when this module is imported.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from shoprank.config import Validate
from shoprank.data.schema import IMPRESSIONS, Column, TableSchema, with_declared
from shoprank.inputs.declare import shop_columns
from shoprank.quality.batch import CONTRACT, Batch, window_end

_INTS = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "Int8Dtype",
    "Int16Dtype",
    "Int32Dtype",
    "Int64Dtype",
]
_FLOATS = ["float16", "float32", "float64", "Float32Dtype", "Float64Dtype"]
# logical type -> what ExpectColumnValuesToBeInTypeList accepts: dtype names, and for
# object columns the Python type of every value ("str"). Timestamps are checked with
# ExpectColumnValuesToBeOfType("Timestamp"): the scalar type of a timezone-aware column.
TYPE_LISTS = {
    "string": ["StringDtype", "str"],
    "int": _INTS,
    "flag": [*_INTS, "bool"],
    "float": [*_FLOATS, *_INTS],  # as in the contract, integers are acceptable floats
}


@dataclass(frozen=True)
class Previous:
    """The last accepted batch, for the row-count check."""

    batch_id: str
    rows: dict[str, int]


def _make(cls_name: str, table: str, where: str | None, check: str, **kwargs: Any):
    import great_expectations.expectations as gxe

    meta = {"table": table, "column": where or "", "check": check}
    return getattr(gxe, cls_name)(meta=meta, notes=check, **kwargs)  # notes: shown in the Data Docs


def _column_expectations(
    table: str, col: Column, settings: Validate, now: pd.Timestamp, end: pd.Timestamp | None
) -> list:
    name = col.name
    out = []
    if col.type == "timestamp":
        out.append(
            _make(
                "ExpectColumnValuesToBeOfType",
                table,
                name,
                f"{name} is a UTC timestamp",
                column=name,
                type_="Timestamp",
            )
        )
    else:
        out.append(
            _make(
                "ExpectColumnValuesToBeInTypeList",
                table,
                name,
                f"{name} is of type {col.type}",
                column=name,
                type_list=TYPE_LISTS[col.type],
            )
        )
    if not col.nullable:
        out.append(_make("ExpectColumnValuesToNotBeNull", table, name, f"{name} has no nulls", column=name))
    if col.values is not None or col.type == "flag":
        values = list(col.values) if col.values is not None else [0, 1]
        out.append(
            _make(
                "ExpectColumnValuesToBeInSet",
                table,
                name,
                f"{name} is {col.allowed()}",
                column=name,
                value_set=values,
            )
        )
    hi = col.max
    if table == IMPRESSIONS.name and name == "position":
        hi = settings.max_position  # the contract leaves the page size to the settings
    if col.min is not None or hi is not None:
        bounds = Column(name, col.type, col.meaning, min=col.min, max=hi, exclusive_min=col.exclusive_min)
        out.append(
            _make(
                "ExpectColumnValuesToBeBetween",
                table,
                name,
                f"{name} {bounds.allowed()}",
                column=name,
                min_value=col.min,
                max_value=hi,
                strict_min=col.exclusive_min,
            )
        )
    if col.type == "timestamp":
        earliest = pd.Timestamp(settings.min_timestamp)
        out.append(
            _make(
                "ExpectColumnValuesToBeBetween",
                table,
                name,
                f"{name} not before {earliest:%Y-%m-%d} and not in the future",
                column=name,
                min_value=earliest,
                max_value=now,
            )
        )
        if end is not None and table != IMPRESSIONS.name:
            out.append(
                _make(
                    "ExpectColumnValuesToBeBetween",
                    table,
                    name,
                    f"{name} not after the batch window (ends {end:%Y-%m-%d %H:%M} UTC)",
                    column=name,
                    max_value=end,
                )
            )
    return out


def table_expectations(
    schema: TableSchema,
    df: pd.DataFrame,
    settings: Validate,
    now: pd.Timestamp,
    end: pd.Timestamp | None,
    previous: Previous | None,
) -> list:
    """The suite of one contract table; columns that are absent get only their "exists" check."""
    table = schema.name
    out = [_make("ExpectTableRowCountToBeBetween", table, None, f"{table} is not empty", min_value=1)]
    if previous is not None and table in previous.rows:
        floor = math.ceil(settings.min_row_ratio * previous.rows[table])
        out.append(
            _make(
                "ExpectTableRowCountToBeBetween",
                table,
                None,
                f"{table} rows >= {settings.min_row_ratio:g} x the previous batch "
                f"({previous.rows[table]:,} rows in {previous.batch_id})",
                min_value=floor,
            )
        )
    for col in schema.columns:
        if col.name not in df.columns:
            if col.name not in schema.optional:
                out.append(
                    _make(
                        "ExpectColumnToExist",
                        table,
                        col.name,
                        f"{table} has column {col.name}",
                        column=col.name,
                    )
                )
            continue
        out += _column_expectations(table, col, settings, now, end)
    key = [k for k in schema.key if k in df.columns]
    if key and len(key) == len(schema.key):
        check = f"{' + '.join(key)} is unique"
        if len(key) == 1:
            out.append(_make("ExpectColumnValuesToBeUnique", table, key[0], check, column=key[0]))
        else:
            out.append(_make("ExpectCompoundColumnsToBeUnique", table, ",".join(key), check, column_list=key))
    if table == IMPRESSIONS.name:
        if {"clicked", "purchased"} <= set(df.columns):
            # for 0/1 flags "purchased implies clicked" is clicked >= purchased (vectorised,
            # unlike ExpectColumnPairValuesToBeInSet, which iterates over rows in pandas)
            out.append(
                _make(
                    "ExpectColumnPairValuesAToBeGreaterThanB",
                    table,
                    "purchased",
                    "purchased implies clicked",
                    column_A="clicked",
                    column_B="purchased",
                    or_equal=True,
                )
            )
        if "clicked" in df.columns:
            out.append(
                _make(
                    "ExpectColumnMeanToBeBetween",
                    table,
                    "clicked",
                    f"overall CTR in [{settings.min_ctr:g}, {settings.max_ctr:g}]",
                    column="clicked",
                    min_value=settings.min_ctr,
                    max_value=settings.max_ctr,
                )
            )
    return out


def files_expectations() -> list:
    return [
        _make(
            "ExpectColumnValuesToBeNull",
            "batch",
            "file",
            "contract files exist and are readable Parquet",
            column="problem",
        )
    ]


def references_expectations(frame: pd.DataFrame) -> list:
    out = []
    for column, table in (("item_id", "catalog"), ("user_id", "users")):
        if f"unknown_{column}" in frame.columns:
            out.append(
                _make(
                    "ExpectColumnValuesToBeNull",
                    "impressions",
                    column,
                    f"every impression's {column} is in {table}",
                    column=f"unknown_{column}",
                )
            )
    return out


def build_suites(
    batch: Batch,
    settings: Validate,
    now: pd.Timestamp,
    previous: Previous | None,
    references: pd.DataFrame | None,
) -> dict[str, list]:
    """Suite name -> expectations, for every frame of ``batch`` that can be validated."""
    end = window_end(batch)
    suites = {"files": files_expectations()}
    for schema in CONTRACT:
        if schema.name in batch.frames:  # with the columns the shop declares (data.columns)
            extended = with_declared(schema, shop_columns(schema.name))
            suites[schema.name] = table_expectations(
                extended, batch.frames[schema.name], settings, now, end, previous
            )
    if references is not None:
        suites["references"] = references_expectations(references)
    return suites
