"""Reading a shop's file: CSV (every field as text) or Parquet, with row labels for messages.

Row labels are what messages and the import report call rows: for CSV the file's line
numbers (the header is line 1, as in a spreadsheet); for Parquet rows counted from 0.

A CSV line with more fields than the header is not read; it is returned as an unreadable
row with its line number, for the table's ``invalid_rows`` setting to drop or fail. Bytes
that are not UTF-8 are kept as escapes (``surrogateescape``) so that only the values that
hold them are invalid (:func:`undecodable`), not the whole file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from shoprank.data.importer.problems import ImportFailed, Problem

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


def read_source(path: Path, fmt: str) -> tuple[pd.DataFrame, dict[int, str]]:
    """A CSV (every field as text, empty = null) or Parquet file with at least one row.

    Also returns the CSV lines that could not be read as rows: line number -> reason.
    """
    if not path.is_file():
        raise ImportFailed(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise ImportFailed(f"{path}: empty file (0 bytes)")
    try:
        skipped: dict[int, str] = {}
        if fmt == "csv":
            df, skipped = _read_csv(path)
            # line numbers: the header is line 1, and skipped lines have no row
            lines = np.arange(2, len(df) + len(skipped) + 2)
            df.index = pd.Index(lines[~np.isin(lines, list(skipped))][: len(df)])
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
    return df, skipped


_SKIPPED = re.compile(r"Skipping line (\d+): (.*)")


def _read_csv(path: Path) -> tuple[pd.DataFrame, dict[int, str]]:
    with open(path, "rb") as f:
        if b"\x00" in f.read(65536):
            raise ImportFailed(f"{path}: binary content, not CSV text (set import.format if it is Parquet)")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", pd.errors.ParserWarning)
            df = pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_values=[""],
                encoding="utf-8",
                encoding_errors="surrogateescape",
                on_bad_lines="warn",
            )
    except pd.errors.EmptyDataError as exc:
        raise ImportFailed(f"{path}: no header and no rows") from exc
    if any(_ESCAPED.search(str(c)) for c in df.columns):  # no column can be named: nothing to read
        raise ImportFailed(f"{path}: cannot read as csv: the header line is not UTF-8 text")
    skipped = {
        int(m[1]): f"line not readable as a row ({m[2].strip()})"
        for w in caught
        for m in _SKIPPED.finditer(str(w.message))
    }
    return df, skipped


_ESCAPED = re.compile("[\udc80-\udcff]")  # what surrogateescape makes of a byte that is not UTF-8


def undecodable(df: pd.DataFrame, columns: list[str]) -> list[Problem]:
    """The values of ``columns`` that held bytes that are not UTF-8 text, one problem per column."""
    problems = []
    for col in columns:
        s = df[col]
        if not (pd.api.types.is_object_dtype(s.dtype) or pd.api.types.is_string_dtype(s.dtype)):
            continue
        bad = s.map(lambda v: isinstance(v, str) and _ESCAPED.search(v) is not None).to_numpy(dtype=bool)
        if bad.any():
            problems.append(Problem(f"column {col!r}: not UTF-8 text", bad, s))
    return problems
