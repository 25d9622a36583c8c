"""Where batches go after the gate: the validated folder and quarantine.

Layout (both roots alike)::

    <root>/<batch_id>/catalog.parquet      byte-identical copies of the raw contract tables
                      users.parquet
                      impressions.parquet
                      validation.json      our summary plus Great Expectations' results
                      summary.txt          the readable summary
                      data_docs/index.html Data Docs of the run (unless a docs_dir was given)
    <validated_root>/CURRENT               the id of the last accepted batch, one line

A batch folder is assembled in a hidden staging folder beside it and renamed into place,
so readers never see half a batch. CURRENT is replaced atomically after the folder is in
place. Downstream steps read :func:`current_batch`, never a guessed folder name.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path

import pyarrow.parquet as pq

from shoprank.quality.batch import CONTRACT, Batch, file_digest, file_name
from shoprank.quality.suites import Previous

POINTER = "CURRENT"
RESULT = "validation.json"
SUMMARY = "summary.txt"
DOCS = "data_docs"


def current_id(validated_root: Path) -> str | None:
    pointer = Path(validated_root) / POINTER
    if not pointer.is_file():
        return None
    batch_id = pointer.read_text().strip()
    return batch_id or None


def current_batch(validated_root: Path) -> Path:
    """Folder of the last accepted batch: what downstream steps read."""
    batch_id = current_id(validated_root)
    if batch_id is None or not (Path(validated_root) / batch_id).is_dir():
        raise FileNotFoundError(f"{validated_root}: no validated batch yet (run `shoprank validate`)")
    return Path(validated_root) / batch_id


def previous_batch(validated_root: Path) -> Previous | None:
    """The last accepted batch and its row counts (read from the Parquet footers), if any."""
    try:
        folder = current_batch(validated_root)
    except FileNotFoundError:
        return None
    rows = {}
    for schema in CONTRACT:
        path = folder / file_name(schema.name)
        if path.is_file():
            rows[schema.name] = pq.read_metadata(path).num_rows
    return Previous(folder.name, rows)


def stage(root: Path, batch: Batch, tables: list[str]) -> Path:
    """A hidden folder under ``root`` holding byte-identical copies of ``tables``."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".incoming-{batch.batch_id}-", dir=root))
    staging.chmod(0o755)  # mkdtemp makes it private; the batch folder is meant to be shared
    for table in tables:
        dest = staging / file_name(table)
        shutil.copyfile(batch.path(table), dest)
        if file_digest(dest) != batch.digests[table]:  # the source changed under us: do not pass it on
            shutil.rmtree(staging, ignore_errors=True)
            raise RuntimeError(f"{batch.path(table)} changed while it was being validated; run again")
    return staging


def install(staging: Path, target: Path) -> None:
    """Move ``staging`` to ``target`` atomically.

    When ``target`` exists (a rerun of the same batch id, so the same table bytes), its
    entries are replaced one by one with ``os.replace`` so the tables never disappear.
    """
    if not target.exists():
        os.rename(staging, target)
        return
    for item in sorted(staging.iterdir()):
        dest = target / item.name
        if item.is_dir():
            old = target / f".old-{item.name}-{uuid.uuid4().hex[:8]}"
            if dest.exists():
                os.rename(dest, old)
            os.rename(item, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(item, dest)
    shutil.rmtree(staging, ignore_errors=True)


def point_current(validated_root: Path, batch_id: str) -> None:
    tmp = Path(validated_root) / f".{POINTER}.{uuid.uuid4().hex[:8]}"
    tmp.write_text(batch_id + "\n")
    os.replace(tmp, Path(validated_root) / POINTER)
