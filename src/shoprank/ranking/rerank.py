"""Re-ranking a scored candidate list: category diversity and exploration slots for new items.

Pure functions over arrays, so the policy is easy to test and to change.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


def diverse_order(
    scores: np.ndarray, groups: np.ndarray, k: int, diversity: float, additive: bool = False
) -> np.ndarray:
    """Greedy top ``k``: each pick discounts the other items of its group, per pick.

    Multiplicative (the default): by the factor ``(1 - diversity)``, so a high enough setting
    lets any other group's item overtake, however far below it scores. ``additive``: by
    ``diversity`` subtracted from the score (maximal marginal relevance on a probability
    scale), so only items within ``diversity`` per shown group-mate trade places: a near-tie
    goes to a group not yet shown, a clearly better item keeps its place. ``diversity = 0``
    is the plain score order. Returns indices into ``scores``.
    """
    n = len(scores)
    k = min(k, n)
    if diversity <= 0 or k == 0:
        return np.argsort(-scores, kind="stable")[:k]
    codes, inverse = np.unique(groups.astype(str), return_inverse=True)
    counts = np.zeros(len(codes))
    decay = 1.0 - min(diversity, 1.0)
    base = np.asarray(scores, dtype=np.float64)
    taken = np.zeros(n, dtype=bool)
    out = np.empty(k, dtype=np.int64)
    for j in range(k):
        shown = counts[inverse]
        discounted = base - diversity * shown if additive else base * decay**shown
        pick = int(np.argmax(np.where(taken, -np.inf, discounted)))
        out[j], taken[pick] = pick, True
        counts[inverse[pick]] += 1
    return out


def exploration_slots(k: int, share: float) -> list[int]:
    """0-based positions of a page of ``k`` reserved for exploration, spread evenly (never the first)."""
    n = int(np.floor(k * share))
    if n <= 0 or k < 2:
        return []
    return sorted({min(k - 1, max(1, round((i + 1) * k / (n + 1)))) for i in range(n)})


class Page(NamedTuple):
    order: np.ndarray  # indices into the candidates, in the order shown
    explored: np.ndarray  # per slot: an exploration slot
    propensity: np.ndarray  # per slot: the probability of the draw that put the item there (1: no draw)


def draw(
    pool: np.ndarray, weights: np.ndarray, n: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` of ``pool`` without replacement, each draw proportional to ``weights`` among those
    left; returns the picks and each draw's probability (given the earlier draws)."""
    left, w = pool.copy(), weights.astype(np.float64).copy()
    picks, probs = np.empty(n, np.int64), np.empty(n, np.float64)
    for i in range(n):
        p = w / w.sum()
        j = int(rng.choice(len(left), p=p))
        picks[i], probs[i] = left[j], p[j]
        left, w = np.delete(left, j), np.delete(w, j)
    return picks, probs


def explore(
    order: np.ndarray, scores: np.ndarray, is_new: np.ndarray, share: float, rng: np.random.Generator
) -> Page:
    """``order`` (a page) with its exploration slots given to new items it left out, drawn with
    probability proportional to their score (so exploration favours promising new items but
    still varies between requests); the lowest exploitation picks make room."""
    k = len(order)
    explored, propensity = np.zeros(k, dtype=bool), np.ones(k)
    slots = exploration_slots(k, share)
    pool = np.flatnonzero(is_new.astype(bool))
    pool = pool[~np.isin(pool, order)]
    n = min(len(slots), len(pool))
    if n == 0:
        return Page(order, explored, propensity)
    picks, probs = draw(pool, np.clip(scores[pool].astype(np.float64), 1e-9, None), n, rng)
    exploit = iter(order[: k - n].tolist())
    taken = dict(zip(slots[:n], zip(picks.tolist(), probs.tolist(), strict=True), strict=True))
    out = np.empty(k, np.int64)
    for pos in range(k):
        if pos in taken:
            out[pos], propensity[pos] = taken[pos]
            explored[pos] = True
        else:
            out[pos] = next(exploit)
    return Page(out, explored, propensity)


def rerank(
    scores: np.ndarray,
    groups: np.ndarray,
    is_new: np.ndarray,
    k: int,
    diversity: float,
    explore_share: float,
    rng: np.random.Generator,
    additive: bool = False,
) -> Page:
    """The page: exploitation by :func:`diverse_order`, then the exploration slots (:func:`explore`)."""
    k = min(k, len(scores))
    order = diverse_order(scores, groups, k, diversity, additive)
    return explore(order, scores, is_new, explore_share, rng)
