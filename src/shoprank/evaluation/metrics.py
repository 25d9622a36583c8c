"""Metrics written once and used by the simulator summary, evaluation and benchmarks."""

from __future__ import annotations

import numpy as np
import pandas as pd
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


def log_loss(y: np.ndarray, p: np.ndarray, eps: float = 1e-15) -> float:
    """Mean binary cross-entropy, with ``p`` clipped to [eps, 1 - eps] so it stays finite."""
    y_arr, p_arr = _check_binary(y, p)
    p_arr = np.clip(p_arr, eps, 1 - eps)
    return float(-np.mean(y_arr * np.log(p_arr) + (1 - y_arr) * np.log1p(-p_arr)))


def expected_calibration_error(y: np.ndarray, p: np.ndarray, bins: int = 15) -> float:
    """ECE: sum over equal-width bins of (bin size / n) * |mean p - click rate| in the bin.

    Bin b holds p in [b/bins, (b+1)/bins); p == 1 falls in the last bin. Empty bins add 0.
    """
    y_arr, p_arr = _check_binary(y, p)
    if len(y_arr) == 0:
        return float("nan")
    idx = _bin_index(p_arr, bins)
    sum_p = np.bincount(idx, weights=p_arr, minlength=bins)
    sum_y = np.bincount(idx, weights=y_arr, minlength=bins)
    # (n_b / n) * |sum_p / n_b - sum_y / n_b| == |sum_p - sum_y| / n
    return float(np.abs(sum_p - sum_y).sum() / len(y_arr))


def reliability_curve(y: np.ndarray, p: np.ndarray, bins: int = 15) -> pd.DataFrame:
    """The reliability diagram as data (a DVC plot file): one row per non-empty bin.

    Columns: bin (0-based; bin b covers [b/bins, (b+1)/bins)), mean_predicted,
    observed_rate (click rate in the bin) and count. Same bins as the ECE.
    """
    y_arr, p_arr = _check_binary(y, p)
    idx = _bin_index(p_arr, bins)
    count = np.bincount(idx, minlength=bins)
    sum_p = np.bincount(idx, weights=p_arr, minlength=bins)
    sum_y = np.bincount(idx, weights=y_arr, minlength=bins)
    keep = count > 0
    return pd.DataFrame(
        {
            "bin": np.flatnonzero(keep),
            "mean_predicted": sum_p[keep] / count[keep],
            "observed_rate": sum_y[keep] / count[keep],
            "count": count[keep],
        }
    )


def group_auc(y: np.ndarray, scores: np.ndarray, groups: np.ndarray, weighted: bool = True) -> float:
    """Mean of the per-request AUC over requests that hold both a click and a non-click.

    ``weighted``: each request counts by its number of impressions (the usual GAUC);
    otherwise every request counts once. Ties within a request count one half, as in
    :func:`auc`. NaN when no request has both classes.
    """
    y_arr, s = _check_binary(y, scores)
    code, n_groups = _group_codes(groups, len(y_arr))
    order = np.lexsort((s, code))
    g, ss, ys = code[order], s[order], y_arr[order]
    n = len(g)
    new_run = np.ones(n, dtype=bool)  # a run: equal scores inside one request
    new_run[1:] = (g[1:] != g[:-1]) | (ss[1:] != ss[:-1])
    run_start = np.flatnonzero(new_run)
    run_end = np.r_[run_start[1:], n]  # exclusive
    run_of = np.cumsum(new_run) - 1
    # 1-based rank within the request; tied scores share the mean of their ranks
    midrank = (run_start[run_of] + run_end[run_of] - 1) / 2 - _group_start(g) + 1
    size = np.bincount(g, minlength=n_groups).astype(np.float64)
    n_pos = np.bincount(g, weights=ys, minlength=n_groups)
    rank_sum = np.bincount(g, weights=midrank * ys, minlength=n_groups)
    n_neg = size - n_pos
    ok = (n_pos > 0) & (n_neg > 0)
    if not ok.any():
        return float("nan")
    per_group = (rank_sum[ok] - n_pos[ok] * (n_pos[ok] + 1) / 2) / (n_pos[ok] * n_neg[ok])
    weights = size[ok] if weighted else np.ones(int(ok.sum()))
    return float(np.average(per_group, weights=weights))


def ndcg_at_k(y: np.ndarray, scores: np.ndarray, groups: np.ndarray, k: int = 10) -> float:
    """Mean NDCG@k over requests with at least one click, graded by the label.

    Gain 2**y - 1 (a 0/1 click gives 0/1; a graded label such as click + purchase works
    too), discount 1 / log2(rank + 1). Ties in score are broken pessimistically: among
    equal scores the lower label ranks first, then row order, so a constant scorer earns
    the worst NDCG rather than inheriting the logged order. NaN without any click.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    y_arr, s = _check_graded(y, scores)
    code, n_groups = _group_codes(groups, len(y_arr))
    gain = np.exp2(y_arr) - 1
    order = _pessimistic_order(code, s, y_arr)
    dcg = _dcg(code[order], gain[order], k, n_groups)
    ideal = np.lexsort((-y_arr, code))
    idcg = _dcg(code[ideal], gain[ideal], k, n_groups)
    ok = idcg > 0
    return float(np.mean(dcg[ok] / idcg[ok])) if ok.any() else float("nan")


def mrr(y: np.ndarray, scores: np.ndarray, groups: np.ndarray) -> float:
    """Mean reciprocal rank of the first clicked item (y > 0) per request with a click.

    Ranks use the whole request (no cutoff); ties are broken as in :func:`ndcg_at_k`.
    NaN without any click.
    """
    y_arr, s = _check_graded(y, scores)
    code, _ = _group_codes(groups, len(y_arr))
    order = _pessimistic_order(code, s, y_arr)
    g, clicked = code[order], y_arr[order] > 0
    rank = np.arange(len(g)) - _group_start(g)  # 0-based within the request
    first = np.unique(g[clicked], return_index=True)[1]  # first click of each request
    return float(np.mean(1.0 / (rank[clicked][first] + 1))) if len(first) else float("nan")


def _check_binary(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_arr, p_arr = _check_graded(y, p)
    if not np.isin(y_arr, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return y_arr, p_arr


def _check_graded(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y_arr = np.asarray(y, dtype=np.float64).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(y_arr) != len(s):
        raise ValueError(f"labels and scores differ in length: {len(y_arr)} != {len(s)}")
    if np.isnan(s).any() or np.isnan(y_arr).any():
        raise ValueError("labels and scores must not contain NaN")
    if (y_arr < 0).any():
        raise ValueError("labels must be non-negative")
    return y_arr, s


def _bin_index(p: np.ndarray, bins: int) -> np.ndarray:
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    if ((p < 0) | (p > 1)).any():
        raise ValueError("probabilities must lie in [0, 1]")
    return np.minimum((p * bins).astype(np.int64), bins - 1)


def _group_codes(groups: np.ndarray, n: int) -> tuple[np.ndarray, int]:
    """Dense integer codes 0..n_groups-1 for any request ids (strings, ints)."""
    codes, uniques = pd.factorize(np.asarray(groups).ravel())
    if len(codes) != n:
        raise ValueError(f"groups differ in length from labels: {len(codes)} != {n}")
    if (codes < 0).any():
        raise ValueError("groups must not contain missing values")
    return codes.astype(np.int64), len(uniques)


def _group_start(sorted_codes: np.ndarray) -> np.ndarray:
    """For codes sorted by group, the index where each row's group begins."""
    new = np.ones(len(sorted_codes), dtype=bool)
    new[1:] = sorted_codes[1:] != sorted_codes[:-1]
    return np.maximum.accumulate(np.where(new, np.arange(len(sorted_codes)), 0))


def _pessimistic_order(code: np.ndarray, s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Rows by request, score descending, then label ascending, then row order."""
    return np.lexsort((np.arange(len(code)), y, -s, code))


def _dcg(sorted_codes: np.ndarray, sorted_gain: np.ndarray, k: int, n_groups: int) -> np.ndarray:
    rank = np.arange(len(sorted_codes)) - _group_start(sorted_codes)  # 0-based
    top = rank < k
    contrib = sorted_gain[top] / np.log2(rank[top] + 2)
    return np.bincount(sorted_codes[top], weights=contrib, minlength=n_groups)
