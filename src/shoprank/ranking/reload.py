"""A new champion without a restart: each worker watches which bundle it should serve.

``shoprank package`` (after ``select`` or ``shoprank rollback``) makes a new bundle the
store's latest. Every ``serve.reload_s`` a daemon thread resolves the bundle again (the
same way the worker did at start: ``$SHOPRANK_MODEL`` or the latest tag); when it names
another folder, the thread loads a ranker from it beside the one serving, then swaps the
reference, so requests in flight finish on the old model and the next ones get the new
one. A bundle that fails to load is logged and the current one keeps serving; the same
folder is not tried again until the store names another. A worker pinned to a folder
(``$SHOPRANK_MODEL`` is a path) resolves to it every time, so it never reloads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from shoprank.logs import log
from shoprank.ranking.periodic import Periodic

logger = logging.getLogger(__name__)


class Reloader(Periodic):
    """Swap ``holder.ranker`` for a ranker of the bundle ``resolve()`` names, when it changes.

    A period of 0 never starts the thread: the worker serves one bundle for life.
    """

    thread_name = "model-reload"

    def __init__(
        self,
        holder: Any,
        resolve: Callable[[], Path],
        load: Callable[[Path], Any],
        period_s: float,
    ):
        super().__init__(period_s, enabled=period_s > 0)
        self.holder, self.resolve, self.load = holder, resolve, load
        self.failed: Path | None = None  # the last bundle that did not load: not retried

    def tick(self) -> None:
        self.check()

    def check(self) -> bool:
        """One look at the store: True when another bundle was loaded and now serves."""
        current = self.holder.ranker
        try:
            wanted = Path(self.resolve())
        except Exception as exc:  # the store is unreadable now: keep serving, look again later
            log(logger, "model store unreadable", error=repr(exc)[:300], level=logging.WARNING)
            return False
        if current is not None and Path(current.bundle) == wanted or wanted == self.failed:
            return False
        try:
            fresh = self.load(wanted)
        except Exception as exc:
            self.failed = wanted
            log(logger, "new model failed to load; the current one serves", bundle=str(wanted),
                error=repr(exc)[:300], level=logging.ERROR, exc_info=True)  # fmt: skip
            return False
        self.holder.ranker = fresh
        log(logger, "model reloaded", bundle=str(wanted), version=getattr(fresh, "version", None))
        if current is not None:
            current.stop_refresh()
        return True
