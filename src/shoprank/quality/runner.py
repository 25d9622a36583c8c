"""`shoprank validate`: the data quality gate between raw batches and everything downstream.

:func:`validate_batch` reads a raw batch folder, runs the Great Expectations suites of
:mod:`shoprank.quality.suites` as one Checkpoint, and then either publishes the batch to
the validated folder (and points ``CURRENT`` at it) or copies it to quarantine and raises
:class:`ValidationFailed`. The raw batch is only ever read.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd

from shoprank.config import Validate
from shoprank.logs import log, timed
from shoprank.quality import store
from shoprank.quality.batch import Batch, files_frame, load_batch, references_frame, with_feedback
from shoprank.quality.checkpoint import quiet_gx, run_checkpoint
from shoprank.quality.report import ValidationFailed, ValidationReport, failures_from
from shoprank.quality.suites import Previous, build_suites

logger = logging.getLogger(__name__)


def _derived_files(batch: Batch, work: Path) -> tuple[dict[str, Path], pd.DataFrame | None]:
    """Parquet files for every suite: the batch's own files, derived frames written to ``work``."""
    files = {name: batch.path(name) for name in batch.frames}
    files["files"] = work / "files.parquet"
    files_frame(batch).to_parquet(files["files"], index=False)
    references = references_frame(batch)
    if references is not None:
        files["references"] = work / "references.parquet"
        references.to_parquet(files["references"], index=False)
    return files, references


def _record(staging: Path, report: ValidationReport, results: list[dict], validated_at: datetime) -> None:
    record = {"validated_at": validated_at.isoformat(), **report.to_dict(), "great_expectations": results}
    for key in ("destination", "result_path", "docs_index"):  # relative, so the folder can move
        path = None if record[key] is None else Path(record[key])
        if path is not None and path.is_relative_to(report.destination):
            record[key] = str(path.relative_to(report.destination))
    (staging / store.RESULT).write_text(json.dumps(record, indent=1, default=str))
    (staging / store.SUMMARY).write_text(report.summary() + "\n")


def _route(
    root: Path,
    batch: Batch,
    tables: list[str],
    report: ValidationReport,
    results: list[dict],
    validated_at: datetime,
    docs: Path | None,
) -> None:
    """Copy ``tables`` and the records of this run to ``root/<batch_id>``, atomically."""
    staging = store.stage(root, batch, tables)
    try:
        if docs is not None:
            shutil.copytree(docs, staging / store.DOCS)
        _record(staging, report, results, validated_at)
        store.install(staging, report.destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def validate_batch(
    batch_dir: Path,
    settings: Validate,
    validated_root: Path,
    quarantine_root: Path,
    docs_dir: Path | None = None,
    feedback: Path | None = None,
) -> ValidationReport:
    """Validate the contract tables in ``batch_dir`` and route the batch.

    On success the tables are copied byte for byte to ``validated_root/<batch_id>/`` with
    validation.json and summary.txt beside them, ``validated_root/CURRENT`` names the batch,
    and the report is returned. On failure the batch goes to ``quarantine_root/<batch_id>/``
    (same layout, nothing written to ``validated_root``) and :class:`ValidationFailed` is
    raised with the readable summary as its message. The batch id is a hash of the table
    bytes, so a rerun on the same batch replaces its own record instead of adding one.
    Data Docs go to ``docs_dir`` if given, else to ``data_docs/`` beside the result.

    ``feedback``: the impressions that `shoprank ingest-feedback` wrote; when the file has rows
    they are appended to the batch's impressions in a temporary copy that is validated (and
    passed on) instead, so the raw batch is never modified (see :func:`with_feedback`).

    Raises FileNotFoundError when ``batch_dir`` is not a folder (nothing to quarantine).
    """
    batch_dir, validated_root, quarantine_root = Path(batch_dir), Path(validated_root), Path(quarantine_root)
    if not batch_dir.is_dir():
        raise FileNotFoundError(f"{batch_dir}: no such batch folder")
    with with_feedback(batch_dir, feedback) as source:
        return _validate(source, batch_dir, settings, validated_root, quarantine_root, docs_dir)


def _validate(
    source: Path,
    batch_dir: Path,
    settings: Validate,
    validated_root: Path,
    quarantine_root: Path,
    docs_dir: Path | None,
) -> ValidationReport:
    """:func:`validate_batch` on the folder ``source`` (``batch_dir`` or its copy with feedback)."""
    start = time.perf_counter()
    validated_at = datetime.now(UTC)
    with timed(logger, "read batch", batch=str(batch_dir)) as info:
        batch = load_batch(source)
        previous: Previous | None = store.previous_batch(validated_root)
        info.update(
            batch_id=batch.batch_id,
            rows=batch.rows,
            problems=len(batch.problems),
            previous=previous.batch_id if previous else None,
        )
    with tempfile.TemporaryDirectory(prefix="shoprank-validate-") as tmp:
        work = Path(tmp)
        site = Path(docs_dir) if docs_dir is not None else work / store.DOCS
        files, references = _derived_files(batch, work)
        with quiet_gx(), timed(logger, "checkpoint", batch_id=batch.batch_id) as info:
            suites = build_suites(batch, settings, pd.Timestamp(validated_at), previous, references)
            info.update(suites=len(suites), expectations=sum(len(s) for s in suites.values()))
            rows, readable = batch.rows, list(batch.frames)
            batch.frames.clear()  # Great Expectations reads the files itself: halve peak memory
            results = run_checkpoint(f"shoprank_{batch.batch_id}", files, suites, site)
        failures, evaluated = failures_from(results)
        success = not failures
        root = validated_root if success else quarantine_root
        destination = root / batch.batch_id
        report = ValidationReport(
            batch_id=batch.batch_id,
            success=success,
            source=batch_dir,
            destination=destination,
            result_path=destination / store.RESULT,
            docs_index=(site if docs_dir is not None else destination / store.DOCS) / "index.html",
            rows=rows,
            evaluated=evaluated,
            failures=failures,
            previous_batch=previous.batch_id if previous else None,
            seconds=round(time.perf_counter() - start, 3),
        )
        with timed(logger, "validated" if success else "quarantined", destination=str(destination)):
            tables = readable if success else batch.present
            _route(root, batch, tables, report, results, validated_at, site if docs_dir is None else None)
            if success:
                store.point_current(validated_root, batch.batch_id)
    log(
        logger,
        "validation",
        level=logging.INFO if success else logging.WARNING,
        batch_id=batch.batch_id,
        success=success,
        failed=len(failures),
        evaluated=evaluated,
        seconds=report.seconds,
    )
    if not success:
        raise ValidationFailed(report)
    return report
