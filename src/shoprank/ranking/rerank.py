"""Re-ranking a scored candidate list: category diversity and exploration slots for new items.

Pure functions over arrays, so the policy is easy to test and to change.
"""

from __future__ import annotations

import numpy as np


def diverse_order(scores: np.ndarray, groups: np.ndarray, k: int, diversity: float) -> np.ndarray:
    """Greedy top ``k``: each pick discounts its group's other items by ``(1 - diversity)`` per pick.

    ``diversity = 0`` is the plain score order. Returns indices into ``scores``.
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
        adjusted = np.where(taken, -np.inf, base * decay ** counts[inverse])
        pick = int(np.argmax(adjusted))
        out[j], taken[pick] = pick, True
        counts[inverse[pick]] += 1
    return out


def exploration_slots(k: int, share: float) -> list[int]:
    """0-based positions of a page of ``k`` reserved for exploration, spread evenly (never the first)."""
    n = int(np.floor(k * share))
    if n <= 0 or k < 2:
        return []
    return sorted({min(k - 1, max(1, round((i + 1) * k / (n + 1)))) for i in range(n)})


def rerank(
    scores: np.ndarray,
    groups: np.ndarray,
    is_new: np.ndarray,
    k: int,
    diversity: float,
    explore_share: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(order, explored): the page as indices into the candidates, and which slots explore.

    Exploitation fills the page by :func:`diverse_order`; the exploration slots then take
    new items that exploitation left out, drawn with probability proportional to their
    score (so exploration favours promising new items but still varies between requests).
    """
    k = min(k, len(scores))
    order = diverse_order(scores, groups, k, diversity)
    explored = np.zeros(k, dtype=bool)
    slots = exploration_slots(k, explore_share)
    if not slots:
        return order, explored
    pool = np.flatnonzero(is_new.astype(bool))
    pool = pool[~np.isin(pool, order)]
    if len(pool) == 0:
        return order, explored
    n = min(len(slots), len(pool))
    weights = np.clip(scores[pool].astype(np.float64), 1e-9, None)
    picks = rng.choice(pool, size=n, replace=False, p=weights / weights.sum())
    page = [i for i in order.tolist()]
    exploit = page[: k - n]  # the lowest exploitation picks make room
    out: list[int] = []
    it_exploit, it_explore = iter(exploit), iter(picks.tolist())
    slot_set = set(slots[:n])
    for pos in range(k):
        if pos in slot_set:
            out.append(next(it_explore))
            explored[pos] = True
        else:
            out.append(next(it_exploit))
    return np.asarray(out, dtype=np.int64), explored
