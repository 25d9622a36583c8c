"""Why each result scored as it did: occlusion of feature groups, worded for people.

The champion is asked again with each group of inputs (the explanation groups of the declared inputs) set to
"unknown"; the groups whose absence lowers the score most are the reasons. On the fast
path the occlusion runs on the model's input arrays, else on the training-set frame
(:func:`explain.impacts`); either way :func:`explain.reasons` words them.
"""

from __future__ import annotations

import logging

import numpy as np

from shoprank.inputs.frame import Frame
from shoprank.logs import log
from shoprank.ranking import explain
from shoprank.ranking.features import Lookup
from shoprank.ranking.metrics import stage
from shoprank.ranking.scoring import Scored, Scoring

logger = logging.getLogger(__name__)
QUOTED = ("hist_category_share",)  # the derived inputs explain.wording quotes


class Explainer:
    """Reasons for some of a request's scored candidates (timed as ``explain``)."""

    def __init__(self, scoring: Scoring):
        self.scoring = scoring  # its fast path, if any, explains too

    def reasons(self, s: Scored, idx: np.ndarray, timings: dict[str, float]) -> list[list[dict]]:
        """The reasons of candidates ``idx`` of ``s``, in that order; [] each when it fails."""
        if len(idx) == 0:
            return []
        idx = np.asarray(idx)
        with stage("explain", timings):
            try:
                if self.scoring.fast is not None:
                    sub, drops = self.fast_impacts(s, idx)
                else:
                    sub = self.scoring.frame_of(s, idx)
                    _, drops = explain.impacts(self.scoring.scorer, sub)
            except Exception as exc:  # an explanation is a nicety: never fail the request for it
                log(logger, "explanation failed", error=repr(exc)[:300], level=logging.WARNING)
                return [[] for _ in idx]
            return explain.reasons(sub, drops, s.cosine[idx])

    def fast_impacts(self, s: Scored, idx: np.ndarray) -> tuple[Frame, dict[str, np.ndarray]]:
        """Occlusion on the fast path's arrays; a small frame of the values the reasons quote."""
        fast = self.scoring.fast
        if fast is None:
            raise ValueError("no fast path: explain on the frame")
        rows = s.rows[idx]
        items = s.lookup.items.iloc[idx].reset_index(drop=True)
        sub = Lookup(items, s.lookup.user, s.user_known, None)
        arrays = fast.inputs(rows, sub, s.q_vec, s.query, self.scoring.catalog.vectors[rows])
        _, drops = fast.occlusion(arrays)
        wording = items.copy()
        quoted = [c for c in QUOTED if c in fast.derived]  # derived values the reasons' words quote
        for c, values in fast.cross_arrays(rows, sub, s.query, quoted).items():
            wording[c] = values
        return Frame(wording, {}), drops
