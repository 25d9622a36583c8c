"""The ``data:`` and ``import:`` sections of params.yaml as typed settings (a part of :mod:`shoprank.config`).

Kept apart so that config.py stays short; :class:`shoprank.config.Params` holds them as
``data`` and ``import_``. The steps these settings drive are in src/shoprank/data/ (raw.py,
importer/).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Strict(BaseModel):
    """Unknown keys are rejected, values are frozen: as every settings block of shoprank.config."""

    model_config = ConfigDict(extra="forbid", frozen=True)


Scalar = str | bool | int | float  # a value written in params.yaml


ColumnKind = Literal["numeric", "categorical"]
EXTRA_TABLES = ("users", "catalog", "impressions")  # the contract tables a shop may add columns to


class Data(Strict):
    """Where the raw batch comes from, and the columns a shop brings beside the contract's."""

    source: Literal["simulate", "import"] = "simulate"  # the first pipeline stage runs one or the other
    # table -> {column: numeric | categorical}: model inputs of every candidate and of serving
    columns: dict[str, dict[str, ColumnKind]] = {}

    @field_validator("columns")
    @classmethod
    def _tables(cls, value: dict[str, dict[str, ColumnKind]]) -> dict[str, dict[str, ColumnKind]]:
        if unknown := set(value) - set(EXTRA_TABLES):
            known = list(EXTRA_TABLES)
            raise ValueError(f"unknown table(s) {sorted(unknown)}; columns can be added to {known}")
        names = [name for cols in value.values() for name in cols]
        if bad := [n for n in names if not re.fullmatch(r"[a-z][a-z0-9_]*", n)]:
            raise ValueError(f"column names must be lower-case identifiers: {bad}")
        if dup := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"column(s) {dup} declared for more than one table")
        return value


class TimeFormat(Strict):
    """How a source column holds time: epoch numbers in a unit, or text in a strptime format."""

    unit: Literal["s", "ms", "us", "ns"] | None = None
    format: str | None = None  # e.g. "%d-%b-%Y" for 01-Jan-1995

    @model_validator(mode="after")
    def _one(self) -> TimeFormat:
        if (self.unit is None) == (self.format is None):
            raise ValueError("give exactly one of unit (s, ms, us, ns) or format (strptime, e.g. '%d-%b-%Y')")
        return self


class ClickRule(Strict):
    """``clicked`` from a source column: 1 where it lies in [min, max], or where it is one of ``values``."""

    column: str
    min: float | None = None
    max: float | None = None
    values: list[Scalar] | None = None

    @model_validator(mode="after")
    def _one(self) -> ClickRule:
        bounded = self.min is not None or self.max is not None
        if bounded == (self.values is not None):
            raise ValueError("give min and/or max (a numeric column), or values (a list), not both")
        if self.values is not None and not self.values:
            raise ValueError("values must list at least one value")
        return self


class Labels(Strict):
    """Text from 0/1 flag columns: the names of the set ones, joined (one-hot -> text)."""

    columns: list[str] = Field(min_length=1)
    sep: str = ", "


class Sessions(Strict):
    """Request ids from a user's events: a source column, or a new session after a time gap."""

    column: str | None = None
    session_gap_minutes: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one(self) -> Sessions:
        if (self.column is None) == (self.session_gap_minutes is None):
            raise ValueError("give exactly one of column or session_gap_minutes")
        return self


class ImportTable(Strict):
    """How one contract table is built from a shop's file (steps in docs/data-contract.md's order)."""

    file: Path  # relative to import.dir
    columns: dict[str, str] = {}  # contract or declared column <- source column
    labels: dict[str, Labels] = {}
    timestamps: dict[str, TimeFormat] = {}  # default: ISO 8601 text or Parquet timestamps
    click: ClickRule | None = None
    constants: dict[str, Scalar] = {}
    template: dict[str, str] = {}  # column -> text with {other_column} placeholders
    defaults: dict[str, Scalar] = {}  # fills nulls; first_seen: the earliest impression
    request_id: Sessions | None = None
    invalid_rows: Literal["fail", "drop"] = "fail"


class Import(Strict):
    """A shop's own files mapped onto the contract. Owned by src/shoprank/data/importer/."""

    dir: Path = Path("data/import")
    format: Literal["auto", "csv", "parquet"] = "auto"
    tables: dict[str, ImportTable] = {}
