"""The feedback loop: the service's append-only log of what it served and what shoppers did.

- :class:`FeedbackLog` (log.py): durable appends (the service) and reads (ingestion)
"""

from shoprank.feedback.log import BackgroundAppender, FeedbackLog, FeedbackRecordError

__all__ = ["BackgroundAppender", "FeedbackLog", "FeedbackRecordError"]
