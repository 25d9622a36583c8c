"""Catalogue updates: rows of the catalog table that reach the service between pipeline runs.

A shop lists, changes and delists items with rows that follow the catalog table of the
data contract (docs/data-contract.md), plus one optional column, ``delisted``:

- a row with every catalog column (``delisted`` absent, null or 0) lists a new item, or
  replaces what the service knows of a known one (title, description, category, brand,
  price, attributes, created_at);
- a row with ``delisted`` 1 needs only ``item_id``: the item is not returned again until
  a later row lists it anew.

Files of such rows (JSON lines, one object per line, or Parquet) land in
``paths.catalog_updates``. :func:`submit` (``shoprank catalog-update FILE``) checks a file
and writes its valid rows there as one Parquet file, first under a dot-name the service
skips and then renamed, so a reader never sees half a file; invalid rows are written with
their reasons to ``<paths.catalog_updates>/quarantine/``. The service reads the folder with
:func:`read_checked`: the same checks, so a file put there by other means is checked too.
The checks are the contract's own (:mod:`shoprank.data.schema`) after the importer's
conversion of values to the contract's types (:mod:`shoprank.data.importer.coerce`).
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from shoprank.data.importer.coerce import parse
from shoprank.data.schema import (
    CATALOG,
    Column,
    TableSchema,
    column_violations,
    conform,
    key_violations,
    with_declared,
)
from shoprank.inputs.declare import shop_columns

DELISTED = Column("delisted", "flag", "1: the item is no longer sold; only item_id is needed.", nullable=True)
QUARANTINE = "quarantine"  # the sub-folder of rejected rows; the service reads only the folder's files
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet", ".pq": "parquet"}


class UpdateError(ValueError):
    """A file of catalogue updates cannot be read at all; the message says why."""


@dataclass
class Checked:
    """A file's rows: the valid ones in the contract's types, and the rejected ones with reasons."""

    rows: pd.DataFrame  # the catalog columns and ``delisted`` (int8, 0 or 1)
    rejected: list[dict[str, Any]] = field(default_factory=list)  # {row, problems, values}
    ignored: list[str] = field(default_factory=list)  # columns that are neither the contract's nor declared


def update_schema() -> TableSchema:
    """The catalog table with the shop's declared catalog columns (optional here) and ``delisted``."""
    base = with_declared(CATALOG, shop_columns("catalog"))
    optional = frozenset({DELISTED.name, *(c.name for c in base.columns if c.name not in CATALOG.names)})
    return TableSchema("catalog_updates", base.meaning, (*base.columns, DELISTED), base.key, optional)


def read_records(path: Path) -> tuple[pd.DataFrame, dict[int, tuple[str, str]]]:
    """A file's records as read (index: the 1-based row, a JSON-lines file's line), and the lines
    that are not records at all (row -> (reason, the line))."""
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise UpdateError(
            f"{path}: not a catalogue update file; use JSON lines (.jsonl) or Parquet (.parquet)"
        )
    try:
        if kind == "parquet":
            df = pd.read_parquet(path)
            return df.set_axis(pd.RangeIndex(1, len(df) + 1)), {}
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, ValueError) as exc:
        raise UpdateError(f"{path}: cannot be read: {exc}"[:500]) from None
    records: dict[int, dict[str, Any]] = {}
    unreadable: dict[int, tuple[str, str]] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            unreadable[number] = (f"not JSON: {exc}"[:200], line)
            continue
        if isinstance(record, dict):
            records[number] = record
        else:
            unreadable[number] = (f"not a JSON object but {type(record).__name__}", line)
    return pd.DataFrame.from_dict(records, orient="index"), unreadable


def check(records: pd.DataFrame, schema: TableSchema) -> Checked:
    """The valid rows of ``records`` and the others, each with every problem it has."""
    problems: dict[Any, list[str]] = {}

    def flag(labels: pd.Index, reason: str, column: str | None = None) -> None:
        for label in labels:
            value = records.at[label, column] if column in records else None
            shown = "" if _missing(value) else f" (got {_plain(value)!r})"
            problems.setdefault(label, []).append(reason + shown)

    delisted = pd.Series(0, index=records.index, dtype="Int8")
    if DELISTED.name in records:
        delisted, bad = parse(records[DELISTED.name], DELISTED.type, DELISTED.name)
        if bad is not None:
            flag(records.index[bad.mask], bad.reason, DELISTED.name)
        delisted = delisted.fillna(0)
    listing = (delisted != 1).to_numpy()
    out: dict[str, pd.Series] = {}
    for col in schema.columns:
        if col.name == DELISTED.name:
            continue
        need = np.ones(len(records), bool) if col.name == "item_id" else listing  # delisting: the id only
        if col.name not in records:
            if col.name not in schema.optional:
                flag(records.index[need], f"column {col.name!r} is missing")
            out[col.name] = pd.Series(None, index=records.index, dtype=object)
            continue
        values, bad = parse(records[col.name], col.type, col.name)
        if bad is not None:
            flag(records.index[bad.mask & need], bad.reason, col.name)
        ok = need & ~bad.mask if bad is not None else need
        kept = values[ok]
        for reason, mask in column_violations(kept, col):
            flag(kept.index[mask], reason, col.name)
        out[col.name] = values
    flag(
        records.index[~_is_json_object(out["attributes"]) & listing],
        "column 'attributes': not a JSON object",
        "attributes",
    )
    for reason, mask in key_violations(pd.DataFrame({"item_id": out["item_id"]}), schema):
        flag(records.index[mask], f"{reason}: item_id repeats an earlier row", "item_id")
    good = ~records.index.isin(list(problems))
    rows = conform(pd.DataFrame(out)[good], schema)
    rows[DELISTED.name] = delisted[good].astype("int8")
    rejected = [
        {"row": _plain(r), "problems": p, "values": _record(records, r)} for r, p in sorted(problems.items())
    ]
    ignored = [str(c) for c in records.columns if c not in schema.names]
    return Checked(rows.reset_index(drop=True), rejected, ignored)


def _is_json_object(series: pd.Series) -> np.ndarray:
    """Rows whose ``attributes`` the features step can read as a JSON object (features/items.py)."""

    def ok(value: Any) -> bool:
        if not isinstance(value, str):
            return True  # null or the wrong type: the contract's checks name it
        try:
            return isinstance(json.loads(value), dict)
        except ValueError:
            return False

    return series.map(ok).to_numpy(dtype=bool)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _record(records: pd.DataFrame, label: Any) -> dict[str, Any]:
    if label not in records.index:
        return {}
    return {str(k): _plain(v) for k, v in records.loc[label].items() if not _missing(v)}


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def read_checked(path: Path, schema: TableSchema | None = None) -> Checked:
    """A file of catalogue updates, read and checked (the service and :func:`submit` alike)."""
    records, unreadable = read_records(path)
    checked = check(records, schema or update_schema())
    lost = [{"row": r, "problems": [why], "values": {"line": line}} for r, (why, line) in unreadable.items()]
    checked.rejected = sorted(checked.rejected + lost, key=lambda x: x["row"])
    return checked


def describe(rejected: dict[str, Any]) -> str:
    """One rejected row as a line: ``row 3: column 'price': values must be > 0 (got -1)``."""
    return f"row {rejected['row']}: " + "; ".join(rejected["problems"])


def landed_name(now: datetime | None = None) -> str:
    """A file name that sorts by landing time: UTC stamp to the microsecond, then a random part."""
    now = now or datetime.now(UTC)
    return f"{now.strftime('%Y%m%dT%H%M%S%fZ')}-{secrets.token_hex(4)}"


def write_atomic(path: Path, write: Any) -> Path:
    """``write(tmp)`` beside ``path`` under a dot-name (skipped by readers), synced, then renamed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def submit(path: Path, folder: Path) -> dict[str, Any]:
    """Check the file ``path`` and drop its valid rows into ``folder`` (the service applies them);
    rejected rows go to ``folder/quarantine``. Returns what was written."""
    checked = read_checked(Path(path))
    name = landed_name()
    rows = checked.rows
    landed = quarantined = None
    if len(rows):
        landed = write_atomic(folder / f"{name}.parquet", lambda tmp: rows.to_parquet(tmp, index=False))
    if checked.rejected:
        lines = [json.dumps({"source": str(path), **r}, default=str) for r in checked.rejected]
        text = "\n".join(lines) + "\n"
        quarantined = write_atomic(folder / QUARANTINE / f"{name}.jsonl", lambda tmp: tmp.write_text(text))
    delisted = int(rows[DELISTED.name].sum()) if len(rows) else 0
    return {
        "file": landed,
        "accepted": len(rows),
        "listed": len(rows) - delisted,
        "delisted": delisted,
        "rejected": checked.rejected,
        "quarantine": quarantined,
        "ignored_columns": checked.ignored,
    }


def pending(folder: Path) -> list[Path]:
    """The update files in ``folder``, in the order they landed (modification time, then name);
    dot-files (being written) and sub-folders are left out."""
    if not folder.is_dir():
        return []
    files = [
        p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".") and p.suffix in FORMATS
    ]
    return sorted(files, key=lambda p: (p.stat().st_mtime_ns, p.name))
