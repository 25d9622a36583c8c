"""A raw batch as the gate sees it: its files, their content hash and what can be read.

Reading never raises for bad data: a missing, zero-byte or unreadable file becomes a
``problem`` that the ``files`` suite reports (and the batch is quarantined). The cross-
table checks are computed here in pandas as derived frames that Great Expectations then
validates, so that every failure still has a name in the results and the Data Docs.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from shoprank.data.schema import CATALOG, IMPRESSIONS, USERS, TableSchema
from shoprank.feedback.shoppers import USERS_FILE, with_new_shoppers

CONTRACT: tuple[TableSchema, ...] = (CATALOG, USERS, IMPRESSIONS)  # what the gate validates and passes on
ID_LENGTH = 16  # hex digits of the content hash kept as the batch id
HASH_CHUNK = 1 << 20


def file_name(table: str) -> str:
    return f"{table}.parquet"


def file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Batch:
    """The contract files of one batch folder, read once."""

    source: Path
    batch_id: str  # content hash of the contract files: the same bytes always get the same id
    digests: dict[str, str]  # table -> sha256 of its file (present files only)
    frames: dict[str, pd.DataFrame]  # table -> data, for files that could be read
    problems: dict[str, str] = field(default_factory=dict)  # table -> why its file cannot be used

    def path(self, table: str) -> Path:
        return self.source / file_name(table)

    @property
    def present(self) -> list[str]:
        """Tables whose file exists (readable or not): what quarantine keeps."""
        return [t.name for t in CONTRACT if t.name in self.digests]

    @property
    def rows(self) -> dict[str, int]:
        return {name: len(df) for name, df in self.frames.items()}


def _read(path: Path) -> tuple[pd.DataFrame | None, str | None]:
    if not path.is_file():
        return None, f"{path.name}: missing"
    if path.stat().st_size == 0:
        return None, f"{path.name}: zero-byte file"
    try:
        return pd.read_parquet(path), None
    except Exception as exc:  # noqa: BLE001 - any reader error means the file is unusable
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        return None, f"{path.name}: unreadable Parquet ({type(exc).__name__}: {first})"


def load_batch(source: Path) -> Batch:
    """Hash and read the contract tables of ``source`` (ground truth and other files are ignored)."""
    source = Path(source)
    whole = hashlib.sha256()
    digests: dict[str, str] = {}
    frames: dict[str, pd.DataFrame] = {}
    problems: dict[str, str] = {}
    for schema in CONTRACT:
        path = source / file_name(schema.name)
        if path.is_file():
            digests[schema.name] = file_digest(path)
        whole.update(f"{schema.name}={digests.get(schema.name, 'missing')};".encode())
        df, problem = _read(path)
        if df is not None:
            frames[schema.name] = df
        if problem is not None:
            problems[schema.name] = problem
    return Batch(source, whole.hexdigest()[:ID_LENGTH], digests, frames, problems)


def files_frame(batch: Batch) -> pd.DataFrame:
    """One row per contract file; ``problem`` is null when the file exists and reads."""
    return pd.DataFrame(
        {
            "table": [t.name for t in CONTRACT],
            "file": [file_name(t.name) for t in CONTRACT],
            "problem": pd.array([batch.problems.get(t.name) for t in CONTRACT], dtype="string"),
        }
    )


def references_frame(batch: Batch) -> pd.DataFrame | None:
    """Per impression: the item_id / user_id when it is missing from catalog / users, else null.

    Only the references whose two sides were readable get a column; None when there is none.
    """
    imp = batch.frames.get("impressions")
    if imp is None:
        return None
    out = {}
    for column, table in (("item_id", "catalog"), ("user_id", "users")):
        other = batch.frames.get(table)
        if column in imp.columns and other is not None and column in other.columns:
            ids = imp[column].astype("string")
            out[f"unknown_{column}"] = ids.where(~ids.isin(other[column].astype("string")))
    return pd.DataFrame(out) if out else None


def window_end(batch: Batch) -> pd.Timestamp | None:
    """End of the batch window: midnight (UTC) after the last impression, None if unknown.

    A batch covers whole days, so a product listed late on the last day, after the last
    impression, is still inside the window.
    """
    imp = batch.frames.get("impressions")
    if imp is None or "ts" not in imp.columns or not isinstance(imp["ts"].dtype, pd.DatetimeTZDtype):
        return None
    last = imp["ts"].max()
    if pd.isna(last):
        return None
    return last.tz_convert("UTC").floor("D") + pd.Timedelta(days=1)


def _rows(path: Path) -> int:
    try:
        return pq.read_metadata(path).num_rows
    except Exception:  # noqa: BLE001 - an unreadable file has nothing to add
        return 0


@contextmanager
def with_feedback(source: Path, feedback: Path | None) -> Iterator[Path]:
    """The batch folder to validate: ``source`` itself, or a temporary copy with feedback appended.

    When ``feedback`` (the impressions that `shoprank ingest-feedback` wrote) exists and has
    rows, and the raw impressions can be read, the copy holds the raw catalog, the raw users
    followed by the feedback's new shoppers (``users.parquet`` beside ``feedback``) and the
    raw impressions followed by the feedback rows; ``source`` is never modified. Otherwise
    ``source`` is validated as it is (a broken raw batch still fails the gate on its own).
    """
    source = Path(source)
    raw_imp = source / file_name("impressions")
    if feedback is None or not Path(feedback).is_file() or not _rows(Path(feedback)) or not _rows(raw_imp):
        yield source
        return
    with tempfile.TemporaryDirectory(prefix="shoprank-batch-") as tmp:
        merged = Path(tmp)
        for schema in CONTRACT:
            if schema.name != "impressions" and (source / file_name(schema.name)).is_file():
                shutil.copyfile(source / file_name(schema.name), merged / file_name(schema.name))
        raw = pd.read_parquet(raw_imp)
        extra = pd.read_parquet(feedback)
        extra = extra[[c for c in raw.columns if c in extra.columns]]  # the raw batch's optional columns
        both = pd.concat([raw, extra.astype({c: raw[c].dtype for c in extra.columns})], ignore_index=True)
        both.to_parquet(merged / file_name("impressions"), index=False)
        if (source / file_name("users")).is_file():
            users = pd.read_parquet(source / file_name("users"))
            users = with_new_shoppers(users, Path(feedback).parent / USERS_FILE)
            users.to_parquet(merged / file_name("users"), index=False)
        yield merged
