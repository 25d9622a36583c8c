"""What the service served, and the feedback on it.

Every response's items are logged as ``served`` events (queued, written by a background
thread with one fsync per batch: a response does not wait on the disk) and each carries a
feedback token (:mod:`~shoprank.ranking.tokens`). A click or purchase must bring its
token back: any worker checks it, so what was shown is verified whichever worker served
it. The worker that served the response also remembers it for a while and completes the
record with its score, query and user (the ``served`` log has them for the others). Clicks
and purchases are written in-line: the acknowledgement means they are on disk.
"""

from __future__ import annotations

import atexit
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shoprank.feedback import BackgroundAppender, FeedbackLog
from shoprank.ranking import metrics
from shoprank.ranking.requests import BadRequest
from shoprank.ranking.session import DaySoFar
from shoprank.ranking.tokens import FeedbackTokens

SERVED_MEMORY = 50_000  # recent responses kept to check and enrich feedback

Shown = tuple[int, float, str, str | None, str | None]  # position, score, query, user, arm


@dataclass(frozen=True)
class Slots:
    """Per shown slot of a response: its experiment's arm and logging probability."""

    experiment: str | None = None
    arms: list[str | None] | None = None
    propensity: np.ndarray | None = None


class ServedResponses:
    """The log of served items and feedback, and a memory of the last ``memory`` responses."""

    def __init__(
        self,
        feedback: FeedbackLog,
        version: str,
        item_ids: np.ndarray,
        tokens: FeedbackTokens,
        memory: int = SERVED_MEMORY,
        day: DaySoFar | None = None,
    ):
        self.feedback, self.version, self.item_ids, self.memory = feedback, version, item_ids, memory
        self.tokens = tokens
        self.day = day  # the shoppers' day so far, counted from what is served and clicked
        self.appender = BackgroundAppender(feedback)
        atexit.register(self.appender.flush, 5.0)  # a normal shutdown writes what is queued
        self._served: OrderedDict[str, dict[str, Shown]] = OrderedDict()
        self._experiment: dict[str, str | None] = {}  # request -> its experiment
        self._lock = threading.Lock()

    def remember(
        self,
        request_id: str,
        query: str,
        user_id: str | None,
        rows: np.ndarray,
        scores: np.ndarray,
        context: Mapping[str, Any] | None = None,
        arranged: Slots | None = None,
    ) -> None:
        """Log and remember the items of a response (``rows`` in the order shown).

        ``context``: the request's impression columns, logged with each served item so that
        the next training run learns from them as it does from the shop's own log.
        ``arranged``: each slot's experiment arm and logging probability (:class:`Slots`).
        """
        ctx = json.dumps(dict(context), sort_keys=True) if context else None
        slots = arranged or Slots()
        records: list[Mapping[str, Any]] = []
        shown: dict[str, Shown] = {}
        for i, (r, s) in enumerate(zip(rows.tolist(), scores.tolist(), strict=True)):
            item_id, score = str(self.item_ids[r]), float(s)
            arm = slots.arms[i] if slots.arms is not None else None
            shown[item_id] = (i + 1, score, query, user_id, arm)
            records.append(
                {
                    "event": "served",
                    "request_id": request_id,
                    "item_id": item_id,
                    "position": i + 1,
                    "score": score,
                    "query": query,
                    "user_id": user_id,
                    "model_version": self.version,
                    "context": ctx,
                    "experiment": slots.experiment,
                    "arm": arm,
                    "propensity": float(slots.propensity[i]) if slots.propensity is not None else None,
                }
            )
        if records:
            self.appender.put(records)
            if self.day is not None:
                self.day.shown(user_id, len(records))
        with self._lock:
            self._served[request_id] = shown
            self._experiment[request_id] = slots.experiment
            while len(self._served) > self.memory:
                old, _ = self._served.popitem(last=False)
                self._experiment.pop(old, None)

    def sign(self, request_id: str, results: list[dict[str, Any]]) -> None:
        """Give each result of a response its feedback token (over its item id and position)."""
        for r in results:
            r["feedback_token"] = self.tokens.sign(request_id, r["item_id"], r["position"])

    def record(
        self, request_id: str, item_id: str, event: str, token: str, position: int | None = None
    ) -> dict:
        """Write a click or purchase whose ``token`` proves the item was shown in the request.

        A token that does not match (another item, request or position, another secret) is
        refused (:class:`BadRequest`), as is a ``position`` other than the token's.
        """
        shown_at = self.tokens.position(token, request_id, item_id)
        if shown_at is None:
            raise BadRequest(
                f"feedback_token does not match: item {item_id} was not served in request {request_id}"
            )
        if position is not None and position != shown_at:
            raise BadRequest(f"position {position} is not where item {item_id} was shown ({shown_at})")
        with self._lock:
            served = self._served.get(request_id)
            experiment = self._experiment.get(request_id)
        rec: dict[str, Any] = {
            "event": event,
            "request_id": request_id,
            "item_id": item_id,
            "position": shown_at,
            "model_version": self.version,
        }
        if served is not None and item_id in served:  # this worker served it: score, query, user
            _, score, query, user, arm = served[item_id]
            rec.update({"score": score, "query": query, "user_id": user})
            if event == "click" and self.day is not None:
                self.day.clicked(user)
            if experiment is not None:
                rec.update({"experiment": experiment, "arm": arm})
                metrics.EXPERIMENT_FEEDBACK.labels(experiment, arm or "exploration", event).inc()
        (event_id,) = self.feedback.append([rec])
        metrics.FEEDBACK.labels(event).inc()
        return {
            "stored": True,
            "event_id": event_id,
            "request_id": request_id,
            "item_id": item_id,
            "event": event,
            "position": shown_at,
            "verified": True,
        }
