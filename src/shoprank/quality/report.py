"""What a validation run found, in words: :class:`ValidationReport` and :class:`ValidationFailed`.

Failures are read from Great Expectations' JSON validation results (one per suite), so
the report, validation.json and the Data Docs always agree.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

MAX_EXAMPLES = 5  # unexpected values quoted per failure


@dataclass(frozen=True)
class Failure:
    """One failed expectation: where, which check, and what was found."""

    table: str
    column: str
    check: str  # the readable name, e.g. "price > 0"
    expectation: str  # the Great Expectations type, e.g. expect_column_values_to_be_between
    detail: str

    def line(self) -> str:
        where = f"{self.table}.{self.column}" if self.column else self.table
        return f"{where}: {self.check} [{self.expectation}] - {self.detail}"


@dataclass
class ValidationReport:
    """Outcome of :func:`shoprank.quality.validate_batch`."""

    batch_id: str
    success: bool
    source: Path  # the raw batch folder (never modified)
    destination: Path  # validated_root/<batch_id> or quarantine_root/<batch_id>
    result_path: Path  # validation.json beside the tables in destination
    docs_index: Path | None  # Data Docs entry page (index.html)
    rows: dict[str, int]
    evaluated: int  # expectations evaluated over all suites
    failures: list[Failure] = field(default_factory=list)
    previous_batch: str | None = None
    seconds: float = 0.0  # reading and validating (copying the batch not included)

    def summary(self) -> str:
        """The readable summary: outcome, every failed expectation, where things went."""
        rows = ", ".join(f"{t} {n:,}" for t, n in self.rows.items()) or "none readable"
        head = "passed" if self.success else f"FAILED ({len(self.failures)} of {self.evaluated} expectations)"
        lines = [f"batch {self.batch_id} from {self.source}: {head}", f"  rows: {rows}"]
        lines += [f"  - {f.line()}" for f in self.failures]
        lines.append(f"  {'validated' if self.success else 'quarantined'}: {self.destination}")
        lines.append(f"  result: {self.result_path}")
        if self.docs_index is not None:
            lines.append(f"  data docs: {self.docs_index}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for k in ("source", "destination", "result_path", "docs_index"):
            d[k] = None if d[k] is None else str(d[k])
        return d


class ValidationFailed(RuntimeError):
    """The batch failed the gate; it is in quarantine. ``report`` has the details."""

    def __init__(self, report: ValidationReport):
        self.report = report
        super().__init__(report.summary())


def _short(value: Any) -> str:
    if isinstance(value, float) and not math.isnan(value):
        return f"{value:.6g}"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _exception(info: dict) -> str | None:
    """The first exception message in a result's exception_info (flat or keyed by metric)."""
    if not info:
        return None
    entries = [info] if "raised_exception" in info else [v for v in info.values() if isinstance(v, dict)]
    for entry in entries:
        if entry.get("raised_exception"):
            message = str(entry.get("exception_message") or "").strip().splitlines()
            return message[0] if message else "unknown error"
    return None


def describe(result: dict) -> str:
    """What a failed expectation observed, from its JSON result."""
    error = _exception(result.get("exception_info") or {})
    if error is not None:
        return f"could not be evaluated: {error if len(error) <= 100 else error[:97] + '...'}"
    res = result.get("result") or {}
    if res.get("unexpected_count"):
        n, total = res["unexpected_count"], res.get("element_count")
        examples = list(
            dict.fromkeys(_short(v) for v in res.get("partial_unexpected_list") or [] if v is not None)
        )
        text = f"{n:,} of {total:,} rows unexpected" if total else f"{n:,} rows unexpected"
        return text + (f", e.g. {', '.join(examples[:MAX_EXAMPLES])}" if examples else "")
    if "observed_value" in res:
        return f"observed {_short(res['observed_value'])}"
    return "failed"


def failures_from(suite_results: list[dict]) -> tuple[list[Failure], int]:
    """(failures, number of expectations evaluated) from JSON suite validation results."""
    failures: list[Failure] = []
    evaluated = 0
    for suite in suite_results:
        for result in suite.get("results", []):
            evaluated += 1
            if result.get("success"):
                continue
            config = result.get("expectation_config") or {}
            meta = config.get("meta") or {}
            failures.append(
                Failure(
                    table=meta.get("table", suite.get("suite_name", "?")),
                    column=meta.get("column", str((config.get("kwargs") or {}).get("column", ""))),
                    check=meta.get("check", config.get("type", "?")),
                    expectation=config.get("type", "?"),
                    detail=describe(result),
                )
            )
    return failures, evaluated
