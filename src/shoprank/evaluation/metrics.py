"""Metrics written once and used by the simulator summary, evaluation and benchmarks."""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count one half); NaN without both classes."""
    y = np.asarray(labels).astype(bool)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def expected_auc(p: np.ndarray) -> float:
    """AUC that scoring by the true probabilities ``p`` earns when labels ~ Bernoulli(p).

    A ratio of expectations over all ordered pairs (i, j), i != j:
    sum p_i (1 - p_j) [p_i > p_j] (+ half for ties) / sum p_i (1 - p_j).
    This is the Bayes-optimal AUC of the population, free of the label noise of one draw.
    """
    p = np.asarray(p, dtype=np.float64)
    values, inverse = np.unique(p, return_inverse=True)
    w_pos = np.bincount(inverse, weights=p, minlength=len(values))
    w_neg = np.bincount(inverse, weights=1 - p, minlength=len(values))
    self_pairs = float(np.sum(p * (1 - p)))
    below = np.cumsum(w_neg) - w_neg
    concordant = float(np.sum(w_pos * below)) + 0.5 * (float(np.sum(w_pos * w_neg)) - self_pairs)
    total = float(p.sum() * (1 - p).sum()) - self_pairs
    return concordant / total if total > 0 else float("nan")
