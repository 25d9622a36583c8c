"""The shopper's day so far, as this process served it: the serving side of the ``today`` inputs.

The training set gives each impression what the shopper was shown and clicked earlier the
same day (UTC): ``user_impressions_today`` and ``user_ctr_today`` (features/users.py). The
online store only knows the days of the last batch, so serving counts the current day
itself: every response's items for a known shopper id, and every click on them. The
counts live in this process (a service with several workers counts in each; a click
answered by another worker than the page is missed) and reset when the UTC day changes.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

DAY_S = 86_400
MAX_SHOPPERS = 200_000  # shoppers remembered; the least recently seen go first


class DaySoFar:
    """Per shopper: the day (UTC) and the items shown and clicked so far that day."""

    def __init__(
        self,
        prior: float,
        prior_strength: float,
        max_shoppers: int = MAX_SHOPPERS,
        clock: Callable[[], float] = time.time,
    ):
        self.prior, self.k, self.max, self.clock = prior, prior_strength, max_shoppers, clock
        self._days: OrderedDict[str, list[int]] = OrderedDict()  # user -> [day, shown, clicked]
        self._lock = threading.Lock()

    def _today(self, user_id: str) -> list[int]:
        day = int(self.clock() // DAY_S)
        entry = self._days.get(user_id)
        if entry is None or entry[0] != day:
            entry = self._days[user_id] = [day, 0, 0]
        self._days.move_to_end(user_id)
        while len(self._days) > self.max:
            self._days.popitem(last=False)
        return entry

    def shown(self, user_id: str | None, n: int) -> None:
        if user_id and n:
            with self._lock:
                self._today(user_id)[1] += n

    def clicked(self, user_id: str | None) -> None:
        if user_id:
            with self._lock:
                self._today(user_id)[2] += 1

    def values(self, user_id: str | None) -> dict[str, Any]:
        """The two inputs for a request now: zeros and the prior on a shopper's first request today."""
        n = c = 0
        if user_id:
            with self._lock:
                entry = self._days.get(user_id)
                if entry is not None and entry[0] == int(self.clock() // DAY_S):
                    n, c = entry[1], entry[2]
        return {"user_impressions_today": n, "user_ctr_today": (c + self.k * self.prior) / (n + self.k)}
