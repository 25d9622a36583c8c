"""The background refresh of the item features, so requests rarely wait on the online store.

Every ``feature_ttl_s / 2`` a daemon thread re-reads the item table from the store (or
only marks it fresh when the store can tell it has not changed) and then rebuilds what
is derived from it (the fast path's item arrays), here rather than in a request.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shoprank.logs import log
from shoprank.ranking.features import OnlineFeatures
from shoprank.ranking.periodic import Periodic

logger = logging.getLogger(__name__)
REFRESH_CHUNK = 100  # items per online-store read of the background refresh
REFRESH_PAUSE_S = 0.01  # between those reads


class Refresher(Periodic):
    """The refresh thread of one worker: :meth:`start` once, :meth:`stop` to end it early.

    Without a TTL it never starts: values are then read on every request.
    """

    thread_name = "feature-refresh"

    def __init__(self, features: OnlineFeatures, after: Callable[[], None], ttl_s: float):
        super().__init__(max(ttl_s / 2, 0.5), enabled=ttl_s > 0)
        self.features, self.after, self.ttl_s = features, after, ttl_s

    def tick(self) -> None:
        try:
            # skipped while the store is unchanged (SQLite tells); else small chunks with a
            # pause between them: a chunk holds the GIL briefly, where a whole table would
            # hold it long enough to delay the requests in flight
            self.features.refresh_all(chunk=REFRESH_CHUNK, pause_s=REFRESH_PAUSE_S, if_changed=True)
            self.after()
        except Exception as exc:  # logged and retried on the next tick
            log(logger, "feature refresh failed", error=repr(exc)[:300], level=logging.WARNING)
