"""Team-draft interleaving (Radlinski, Kurup and Joachims, CIKM 2008).

Two rankers' lists are merged into one page: in each round the team with fewer picks so
far (a fair coin when they have as many) adds its best item not yet on the page. A click
is credited to the team that picked the item, so one page compares both rankers on the
same shopper, query and moment: far fewer impressions decide than with an A/B split.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np


class Interleaved(NamedTuple):
    order: np.ndarray  # the merged page: candidate indices
    team: np.ndarray  # per slot: 0 (the first list's team) or 1
    # per slot: the probability of the coin toss that set its round's picking order (0.5), or
    # 1 where no toss decided (a spent list)
    propensity: np.ndarray


def team_draft(a: np.ndarray, b: np.ndarray, k: int, rng: np.random.Generator) -> Interleaved:
    """The first ``k`` of the team-draft merge of rankings ``a`` and ``b`` (candidate indices)."""
    lists = (a.tolist(), b.tolist())
    heads = [0, 0]
    picks = [0, 0]
    shown: set[int] = set()
    order: list[int] = []
    team: list[int] = []
    prob: list[float] = []

    def next_of(t: int) -> int | None:
        ranked = lists[t]
        while heads[t] < len(ranked) and ranked[heads[t]] in shown:
            heads[t] += 1
        return ranked[heads[t]] if heads[t] < len(ranked) else None

    while len(order) < k:
        left = [next_of(0), next_of(1)]
        if left[0] is None and left[1] is None:
            break
        if left[0] is None or left[1] is None:  # one list is spent: the other fills the page
            t, p = (1, 1.0) if left[0] is None else (0, 1.0)
        elif picks[0] != picks[1]:  # the second pick of a round: its order came from the toss
            t, p = (0 if picks[0] < picks[1] else 1), 0.5
        else:
            t, p = int(rng.integers(2)), 0.5
        item = left[t]
        assert item is not None
        order.append(item)
        team.append(t)
        prob.append(p)
        shown.add(item)
        picks[t] += 1
    return Interleaved(np.asarray(order, np.int64), np.asarray(team, np.int64), np.asarray(prob))
