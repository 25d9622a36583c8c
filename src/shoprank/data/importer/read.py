"""Reading a shop's file: CSV (every field as text) or Parquet, with row labels for messages.

Row labels are what messages and the import report call rows: for CSV the file's line
numbers (the header is line 1, as in a spreadsheet); for Parquet rows counted from 0.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from shoprank.data.importer.problems import ImportFailed

SUFFIXES = {".csv": "csv", ".txt": "csv", ".parquet": "parquet", ".pq": "parquet"}
ROW_NOTE = {"csv": "rows are CSV line numbers, header = line 1", "parquet": "rows count from 0"}


def file_format(path: Path, fmt: str) -> str:
    """``fmt``, or for ``auto`` the format the file's suffix says."""
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
    df.columns = [str(c) for c in df.columns]
    return df


def _read_csv(path: Path) -> pd.DataFrame:
    with open(path, "rb") as f:
        if b"\x00" in f.read(65536):
            raise ImportFailed(f"{path}: binary content, not CSV text (set import.format if it is Parquet)")
    try:
        return pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""], encoding="utf-8")
    except pd.errors.EmptyDataError as exc:
        raise ImportFailed(f"{path}: no header and no rows") from exc
