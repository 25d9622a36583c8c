"""The headline figures of a simulated batch, gathered chunk by chunk.

:class:`Summary` adds up counts as the chunks of requests are generated, so the figures of
a batch written in chunks need no second pass over its rows and hold nothing that grows
with the number of requests: per position, per item, per intent, and the click
probabilities binned on a fine grid (:data:`AUC_BINS`) for the Bayes-optimal AUC.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd

AUC_BINS = 1 << 20  # bins of P(click) in [0, 1]: pairs within one bin count one half, as ties


class Summary:
    """Figures of the batch so far; :meth:`add` each chunk, then :meth:`result`."""

    def __init__(self) -> None:
        self.impressions = self.clicks = self.purchases = 0
        self.requests = 0
        self.by_position: dict[int, list[int]] = {}  # position -> [impressions, clicks]
        self.by_item: Counter[str] = Counter()
        self.intents: Counter[str] = Counter()
        self.min_ts: pd.Timestamp | None = None
        self.pos = np.zeros(AUC_BINS)  # clicked impressions per bin of P(click)
        self.neg = np.zeros(AUC_BINS)
        self.w_pos = np.zeros(AUC_BINS)  # sum of p per bin
        self.w_neg = np.zeros(AUC_BINS)  # sum of 1 - p per bin
        self.self_pairs = 0.0

    def add(self, impressions: pd.DataFrame, p_click: np.ndarray, requests: pd.DataFrame) -> None:
        """One chunk: its impressions, their true P(click) (same rows), its requests' truth."""
        clicked = impressions["clicked"].to_numpy().astype(bool)
        self.impressions += len(impressions)
        self.clicks += int(clicked.sum())
        self.purchases += int(impressions["purchased"].sum())
        self.requests += int(impressions["request_id"].nunique())  # a request lies in one chunk
        counts = impressions.groupby("position")["clicked"].agg(["size", "sum"])
        for position, (n, k) in counts.iterrows():
            seen = self.by_position.setdefault(int(position), [0, 0])
            seen[0], seen[1] = seen[0] + int(n), seen[1] + int(k)
        self.by_item.update(impressions["item_id"].astype(str).value_counts().to_dict())
        self.intents.update(requests["intent"].value_counts().to_dict())
        if len(impressions):
            first = impressions["ts"].min()
            self.min_ts = first if self.min_ts is None else min(self.min_ts, first)
        p = np.asarray(p_click, dtype=np.float64)
        b = np.minimum((p * AUC_BINS).astype(np.int64), AUC_BINS - 1)
        self.pos += np.bincount(b[clicked], minlength=AUC_BINS)
        self.neg += np.bincount(b[~clicked], minlength=AUC_BINS)
        self.w_pos += np.bincount(b, weights=p, minlength=AUC_BINS)
        self.w_neg += np.bincount(b, weights=1 - p, minlength=AUC_BINS)
        self.self_pairs += float(np.sum(p * (1 - p)))

    def result(self, catalog: pd.DataFrame, users: pd.DataFrame) -> dict:
        """The figures (what `shoprank raw` prints and writes to truth/summary.json)."""
        created = catalog["created_at"]
        is_new = created >= self.min_ts if self.min_ts is not None else created != created
        new_ids = set(catalog["item_id"].astype(str)[is_new])
        n = max(self.impressions, 1)
        intents = pd.Series(self.intents, dtype=float).sort_values(ascending=False, kind="stable")
        return {
            "rows": {"catalog": len(catalog), "users": len(users), "impressions": self.impressions},
            "requests": int(self.requests),
            "ctr": self.clicks / n,
            "purchase_rate": self.purchases / n,
            "ctr_by_position": {k: round(c / s, 4) for k, (s, c) in sorted(self.by_position.items())},
            "new_item_share": float(is_new.mean()),
            "new_item_impression_share": sum(self.by_item[i] for i in new_ids) / n,
            "intents": (intents / intents.sum()).round(4).to_dict() if len(intents) else {},
            "bayes_auc": self._auc(),
            "bayes_auc_expected": self._expected_auc(),
        }

    def _auc(self) -> float:
        n_pos, n_neg = self.pos.sum(), self.neg.sum()
        if n_pos == 0 or n_neg == 0:
            return float("nan")
        below = np.cumsum(self.neg) - self.neg
        return float((self.pos * below).sum() + 0.5 * (self.pos * self.neg).sum()) / float(n_pos * n_neg)

    def _expected_auc(self) -> float:
        """As :func:`shoprank.evaluation.metrics.expected_auc`, over the bins."""
        below = np.cumsum(self.w_neg) - self.w_neg
        ties = float((self.w_pos * self.w_neg).sum()) - self.self_pairs
        concordant = float((self.w_pos * below).sum()) + 0.5 * ties
        total = float(self.w_pos.sum() * self.w_neg.sum()) - self.self_pairs
        return concordant / total if total > 0 else float("nan")


def summarize(sim) -> dict:
    """Headline figures of a simulated data set held in memory (a :class:`Simulation`)."""
    s = Summary()
    s.add(sim.tables["impressions"], sim.truth["impressions"]["p_click"].to_numpy(), sim.truth["requests"])
    return s.result(sim.tables["catalog"], sim.tables["users"])
