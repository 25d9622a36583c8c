"""Data quality gate: Great Expectations suites and the checkpoint runner (docs/quality.md).

Importing this package does not import Great Expectations; :func:`validate_batch` does.
"""

from shoprank.quality.report import Failure, ValidationFailed, ValidationReport
from shoprank.quality.runner import validate_batch
from shoprank.quality.store import current_batch

__all__ = ["Failure", "ValidationFailed", "ValidationReport", "current_batch", "validate_batch"]
