"""Off-policy estimate of the CTR a new ranking would earn, from logs with propensities.

Estimator: self-normalised inverse propensity scoring (SNIPS) under the item-position
model (Li et al. 2018, "Offline evaluation of ranking policies with click models").

Assumptions
- Item-position click model: whether the item in slot k is clicked depends only on that
  item and k (e.g. examination(k) * attractiveness(item)), not on the other items shown.
  Cascade-like effects (a click above suppresses clicks below) violate it.
- Logged propensity p0 = P(logging policy puts this item at this position | request),
  as the simulator writes in ``impressions.propensity``; it must be > 0 wherever the
  target policy can put an item (common support).
- The target policy is deterministic: it puts item a at position k with probability 1 or 0.

For one slot (request x, position k) the logged item a_k gets the weight
w = 1[target puts a_k at k] / p0(a_k at k). Under the assumptions, E[w] = 1 and
E[w * click] = P(click in slot k | target), so

    SNIPS = sum(w * click) / sum(w)      (IPS = sum(w * click) / n_slots)

estimates the target's clicks per shown slot over positions 1..max_position: its CTR.
SNIPS trades a small bias for much less variance than IPS, and is scale-free in w.
The effective sample size (sum w)^2 / sum(w^2) says how many logged slots the estimate
is worth; few matches (a target far from the logging policy) means a noisy estimate.

Which items the target ranks: :func:`estimate_ctr` re-ranks each request's *logged*
items by the new scores. That is exactly the policy above when the log holds every
candidate of the request (page size == candidate count). When the page is a subset of a
larger candidate pool, the re-ranking depends on which items the logging policy happened
to show, so E[w] = 1 no longer holds exactly; compute the target positions over the full
candidate pool (truth/candidates on simulated data) and call :func:`snips_ctr` directly.

A position-agnostic "top-k set" variant would need P(item shown anywhere in the top k),
which the logs do not hold, and it ignores how examination falls with position; it is
not implemented.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class OffPolicyEstimate:
    """The SNIPS estimate with what is needed to judge it."""

    ctr: float  # SNIPS estimate of the target policy's CTR per slot; NaN without matches
    ips_ctr: float  # the unnormalised IPS estimate, for comparison
    logged_ctr: float  # the naive CTR of the logging policy on the same slots
    ess: float  # effective sample size (sum w)^2 / sum w^2; 0 without matches
    n_slots: int  # logged (request, position) slots evaluated
    n_matched: int  # slots where the target puts the logged item at its logged position
    se: float = float("nan")  # standard error of the SNIPS estimate (delta method)


def rank_within_requests(groups: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """1-based position of each row when each request's rows are sorted by score, best first.

    Ties keep row order (a stable sort), so pass tie-free scores for a fair comparison.
    """
    codes, _ = pd.factorize(np.asarray(groups).ravel())
    s = np.asarray(scores, dtype=np.float64).ravel()
    if len(codes) != len(s):
        raise ValueError(f"groups and scores differ in length: {len(codes)} != {len(s)}")
    if np.isnan(s).any():
        raise ValueError("scores must not contain NaN")
    order = np.lexsort((np.arange(len(s)), -s, codes))
    sorted_codes = codes[order]
    new = np.ones(len(s), dtype=bool)
    new[1:] = sorted_codes[1:] != sorted_codes[:-1]
    start = np.maximum.accumulate(np.where(new, np.arange(len(s)), 0))
    position = np.empty(len(s), dtype=np.int64)
    position[order] = np.arange(len(s)) - start + 1
    return position


def snips_ctr(
    position: np.ndarray,
    clicked: np.ndarray,
    propensity: np.ndarray,
    target_position: np.ndarray,
    max_position: int | None = None,
) -> OffPolicyEstimate:
    """SNIPS estimate of the target policy's CTR over positions 1..max_position.

    Arrays align row by row with the logged impressions: ``position`` (1-based, where
    the logging policy showed the item), ``clicked`` (0/1), ``propensity`` (p0 of that
    item at that position) and ``target_position`` (1-based, where the target puts it).
    ``max_position`` None evaluates every logged slot.
    """
    pos = np.asarray(position, dtype=np.int64).ravel()
    click = np.asarray(clicked, dtype=np.float64).ravel()
    p0 = np.asarray(propensity, dtype=np.float64).ravel()
    target = np.asarray(target_position, dtype=np.int64).ravel()
    if not len(pos) == len(click) == len(p0) == len(target):
        raise ValueError("position, clicked, propensity and target_position differ in length")
    if np.isnan(p0).any() or (p0 <= 0).any() or (p0 > 1).any():
        raise ValueError("propensities must lie in (0, 1]; rows without one cannot be used")
    if not np.isin(click, (0.0, 1.0)).all():
        raise ValueError("clicked must be 0 or 1")
    slot = pos <= max_position if max_position is not None else np.ones(len(pos), dtype=bool)
    n_slots = int(slot.sum())
    w = np.where(slot & (target == pos), 1.0 / p0, 0.0)
    w_sum, wc_sum, w2_sum = float(w.sum()), float(w @ click), float(w @ w)
    ctr = wc_sum / w_sum if w_sum > 0 else float("nan")
    # a ratio of two sums over the slots: its delta-method variance is sum w^2 (c - ctr)^2 / (sum w)^2
    se = float(np.sqrt(w**2 @ (click - ctr) ** 2)) / w_sum if w_sum > 0 else float("nan")
    return OffPolicyEstimate(
        se=se,
        ctr=ctr,
        ips_ctr=wc_sum / n_slots if n_slots else float("nan"),
        logged_ctr=float(click[slot].mean()) if n_slots else float("nan"),
        ess=w_sum**2 / w2_sum if w2_sum > 0 else 0.0,
        n_slots=n_slots,
        n_matched=int((w > 0).sum()),
    )


def estimate_ctr(
    impressions: pd.DataFrame, scores: np.ndarray, max_position: int | None = None
) -> OffPolicyEstimate:
    """SNIPS CTR of ranking each request's logged items by ``scores`` (aligned with rows).

    ``impressions`` follows the data contract: request_id, position, clicked, propensity.
    See the module docstring for when re-ranking only the logged items is exact.
    """
    target = rank_within_requests(impressions["request_id"].to_numpy(), scores)
    return snips_ctr(
        impressions["position"].to_numpy(),
        impressions["clicked"].to_numpy(),
        impressions["propensity"].to_numpy(),
        target,
        max_position,
    )
