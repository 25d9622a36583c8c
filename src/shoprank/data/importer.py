"""`shoprank import`: external CSV or Parquet tables mapped into the data contract.

``import.tables`` in params.yaml names a source file per contract table and
``import.columns`` maps contract columns to source columns; an unmapped contract
column is looked up under its own name. Values are coerced to the contract's types
(ids to strings, ISO 8601 text to UTC timestamps, 0/1/true/false to flags, numbers),
then checked with :func:`~shoprank.data.schema.check_table`. Every table is built in
memory before any is written, and :func:`~shoprank.data.io.write_tables` writes them
atomically, so a bad input leaves the output folder as it was.

Row numbers in messages: for CSV they are the file's line numbers (the header is
line 1, as in a spreadsheet); for Parquet they count rows from 0.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.config import Import
from shoprank.data.io import write_tables
from shoprank.data.schema import MAX_ROWS_IN_MESSAGE, TABLES, ContractError, TableSchema, check_table, conform
from shoprank.logs import log

logger = logging.getLogger(__name__)

SUFFIXES = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})  # read as null in non-text columns
FLAGS = {"0": 0, "1": 1, "0.0": 0, "1.0": 1, "false": 0, "true": 1}
DEFAULTS = {("impressions", "query"): ""}  # filled when absent or null: recommendation feeds
ROW_NOTE = {"csv": "rows are CSV line numbers, header = line 1", "parquet": "rows count from 0"}


class ImportFailed(ValueError):
    """An external table cannot be mapped into the contract; the message says where and why."""


def import_tables(settings: Import, out: Path) -> list[Path]:
    """Map every table of ``settings`` into the contract and write them to ``out``.

    Returns the written paths. Raises :class:`ImportFailed` before writing anything
    if any table is missing, unreadable, unparseable or breaks the contract.
    """
    _check_settings(settings)
    built = {
        name: load_table(name, Path(path), settings.columns.get(name, {}), settings.format)
        for name, path in settings.tables.items()
    }
    paths = write_tables(Path(out), built)
    log(logger, "import_done", out=str(out), tables=len(paths), rows=sum(len(df) for df in built.values()))
    return paths


def _check_settings(settings: Import) -> None:
    """Reject empty or misspelt settings (unknown tables or contract columns)."""
    if not settings.tables:
        raise ImportFailed(
            "no tables configured: set import.tables in params.yaml, e.g. {impressions: logs.csv}"
        )
    for name in [*settings.tables, *settings.columns]:
        if name not in TABLES:
            raise ImportFailed(f"unknown table {name!r} in import settings; known tables: {list(TABLES)}")
    for name, mapping in settings.columns.items():  # a mapping of a table not imported now is fine
        unknown = [c for c in mapping if c not in TABLES[name].names]
        if unknown:
            raise ImportFailed(
                f"import.columns.{name}: unknown contract column(s) {unknown}; "
                f"{name} has {TABLES[name].names}"
            )


def load_table(name: str, path: Path, mapping: dict[str, str], fmt: str = "auto") -> pd.DataFrame:
    """One source file as a contract table in canonical dtypes (nothing is written)."""
    schema = TABLES[name]
    fmt = _format(path, fmt)
    raw = read_source(path, fmt)
    where = f"{path} ({name}; {ROW_NOTE[fmt]})"
    selected = _select(raw, schema, mapping, where)
    columns, problems = {}, []
    for col, series in selected.items():  # every column is tried so that one run reports all of them
        columns[col], problem = _coerce(series, schema.column(col).type, mapping.get(col, col))
        problems += [problem] if problem else []
    if problems:
        raise ImportFailed(f"{where}: {len(problems)} column(s) cannot be parsed\n  " + "\n  ".join(problems))
    df = pd.DataFrame(columns, index=raw.index)
    try:
        check_table(df, schema)
    except ContractError as exc:
        raise ImportFailed(f"{where}: {exc}") from exc
    used = {mapping.get(col, col) for col in selected}
    dropped = [c for c in raw.columns if c not in used]
    log(logger, "import_table", table=name, source=str(path), rows=len(df), dropped=dropped)
    return conform(df, schema)


def _format(path: Path, fmt: str) -> str:
    if fmt != "auto":
        return fmt
    if path.suffix.lower() not in SUFFIXES:
        raise ImportFailed(
            f"{path}: cannot tell the format from the suffix; set import.format to csv or parquet"
        )
    return SUFFIXES[path.suffix.lower()]


def read_source(path: Path, fmt: str) -> pd.DataFrame:
    """Read a CSV (every field as text, empty = null) or Parquet file with at least one row."""
    if not path.is_file():
        raise ImportFailed(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImportFailed(f"{path}: empty file (0 bytes)")
    try:
        if fmt == "csv":
            df = _read_csv(path)
            df.index = pd.RangeIndex(2, len(df) + 2)  # line numbers: the header is line 1
        else:
            df = pd.read_parquet(path)
            df.index = pd.RangeIndex(len(df))
    except ImportFailed:
        raise
    except Exception as exc:  # parsers raise many types (ArrowInvalid, ParserError, UnicodeDecodeError)
        raise ImportFailed(f"{path}: cannot read as {fmt}: {type(exc).__name__}: {exc}") from exc
    if df.empty:
        raise ImportFailed(f"{path}: no rows (columns: {list(df.columns)})")
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    with open(path, "rb") as f:
        if b"\x00" in f.read(65536):
            raise ImportFailed(f"{path}: binary content, not CSV text (set import.format if it is Parquet)")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except pd.errors.EmptyDataError as exc:
        raise ImportFailed(f"{path}: no header and no rows") from exc


def _select(
    raw: pd.DataFrame, schema: TableSchema, mapping: dict[str, str], where: str
) -> dict[str, pd.Series]:
    """Source columns under contract names; optional columns may be absent, explicitly mapped ones not."""
    selected: dict[str, pd.Series] = {}
    missing = []
    for col in schema.names:
        source = mapping.get(col, col)
        default = DEFAULTS.get((schema.name, col))
        if source in raw.columns:
            series = raw[source]
            selected[col] = series if default is None else series.astype(object).fillna(default)
        elif default is not None and col not in mapping:
            selected[col] = pd.Series(default, index=raw.index, dtype=object)
        elif col not in schema.optional or col in mapping:
            missing.append(repr(source) if source == col else f"{source!r} (mapped to {col!r})")
    if missing:
        raise ImportFailed(
            f"{where}: missing column(s) {', '.join(missing)}; available columns: {list(raw.columns)}"
            f" (map them with import.columns.{schema.name})"
        )
    return selected


def _coerce(series: pd.Series, type_: str, source: str) -> tuple[pd.Series, str | None]:
    """``series`` as the contract type, and what is wrong with it (column, rows, values) or None."""
    if type_ == "timestamp" and pd.api.types.is_numeric_dtype(series.dtype):  # epoch s or ms? refuse to guess
        return series, f"column {source!r} holds numbers ({series.dtype}); expected {EXPECTED[type_]}"
    if type_ != "string":
        series = _nullify(series)
    converted, bad = COERCE[type_](series)
    bad = np.asarray(bad, dtype=bool) & series.notna().to_numpy()
    if bad.any():
        rows = series.index[bad]
        shown = ", ".join(f"{r}={_plain(series[r])!r}" for r in rows[:MAX_ROWS_IN_MESSAGE])
        return converted, (
            f"column {source!r}: {len(rows)} value(s) are not a valid {type_} "
            f"({EXPECTED[type_]}); first rows: {shown}"
        )
    return converted, None


def _plain(value: object) -> object:
    return value.item() if isinstance(value, np.generic) else value  # 0.5, not np.float64(0.5)


def _nullify(series: pd.Series) -> pd.Series:
    """Text that means "no value" (empty, NA, null, ...) becomes a real null."""
    if not pd.api.types.is_object_dtype(series.dtype) and not pd.api.types.is_string_dtype(series.dtype):
        return series
    text = series.astype(object)
    tokens = text.map(lambda v: isinstance(v, str) and v.strip().lower() in NULL_TOKENS)
    return text.mask(tokens.astype(bool))


def _to_string(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_float_dtype(s.dtype) and (s.dropna() % 1 == 0).all():
        s = s.astype("Int64")  # integer ids that went through a float column: 7.0 -> "7"
    elif pd.api.types.is_object_dtype(s.dtype):
        s = s.map(lambda v: json.dumps(v) if isinstance(v, dict | list) else v)  # nested attributes
    return s.astype("string"), pd.Series(False, index=s.index)


def _to_timestamp(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_datetime64_any_dtype(s.dtype):
        return pd.to_datetime(s, utc=True), pd.Series(False, index=s.index)  # naive is taken as UTC
    out = pd.to_datetime(s, utc=True, errors="coerce", format="ISO8601")
    return out, out.isna()


def _to_number(s: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(s.dtype):
        s = s.astype("Int8")
    return pd.to_numeric(s.astype(object), errors="coerce").astype("float64")


def _to_float(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num = _to_number(s)
    return num, num.isna()


def _to_int(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    num = _to_number(s)
    bad = num.isna() | ~np.isfinite(num) | (num % 1 != 0)
    return num.mask(bad).astype("Int64"), bad


def _to_flag(s: pd.Series) -> tuple[pd.Series, pd.Series]:
    if pd.api.types.is_object_dtype(s.dtype):
        s = s.map(lambda v: FLAGS.get(v.strip().lower(), v) if isinstance(v, str) else v)
    num = _to_number(s)
    bad = ~num.isin([0, 1])
    return num.mask(bad).astype("Int8"), bad


COERCE: dict[str, Callable[[pd.Series], tuple[pd.Series, pd.Series]]] = {
    "string": _to_string,
    "timestamp": _to_timestamp,
    "float": _to_float,
    "int": _to_int,
    "flag": _to_flag,
}
EXPECTED = {
    "string": "text",
    "timestamp": "ISO 8601 text such as 2024-01-31T12:00:00Z, no zone means UTC, or a Parquet timestamp",
    "float": "a number",
    "int": "a whole number",
    "flag": "0, 1, true or false",
}
