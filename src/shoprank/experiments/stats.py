"""The statistics of an experiment's report: intervals, the sample-ratio check, the sequential test.

Every interval is a normal (central limit) interval at level ``1 - alpha`` over independent
randomisation units (users, or requests): each metric is a ratio of sums over the units, the
CTR clicks over impressions, a per-request mean its sum over the number of requests, and by
the delta method (Deng, Knoblich, Lu, "Applying the delta method in metric analytics", KDD
2018) ``se(R) = sqrt(sum((y_u - R m_u)^2) / (n - 1) / n) / mean(m)`` over the ``n`` units with
sums ``y_u``, ``m_u``. When every unit is one request and ``m_u = 1`` this is ``s / sqrt(n)``. A
difference of two arms adds the variances (the arms' units are independent).

The sequential test is the mixture sequential probability ratio test (mSPRT) of Johari,
Pekelis and Walsh, "Always valid inference: continuous monitoring of A/B tests" (2017;
Operations Research 70(3), 2022): see :func:`log_msprt`. Its p-value may be read after every
request without inflating the error rate.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CHALLENGER_BETTER = "challenger better"
CHAMPION_BETTER = "champion better"
CONTINUE = "continue"


@dataclass(frozen=True)
class Estimate:
    """A value, its standard error and its interval (None where it cannot be computed)."""

    value: float | None
    se: float | None
    low: float | None = None
    high: float | None = None

    def to_dict(self) -> dict[str, float | None]:
        return {"value": self.value, "low": self.low, "high": self.high, "se": self.se}


def z_of(alpha: float) -> float:
    """The two-sided normal quantile of level ``1 - alpha``."""
    return float(stats.norm.ppf(1 - alpha / 2))


def _finite(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def interval(value: float, se: float, alpha: float) -> Estimate:
    """``value +- z se``; a value or standard error that is not finite leaves the bounds empty."""
    v, s = _finite(value), _finite(se)
    if v is None or s is None:
        return Estimate(v, s)
    z = z_of(alpha)
    return Estimate(v, s, v - z * s, v + z * s)


def ratio_estimate(y: np.ndarray, m: np.ndarray, alpha: float) -> Estimate:
    """``sum(y) / sum(m)`` over units (e.g. clicks over impressions) with its delta-method interval.

    With ``m = 1`` per unit this is the mean of ``y`` and its usual ``s / sqrt(n)`` interval.
    """
    y, m = np.asarray(y, dtype=np.float64), np.asarray(m, dtype=np.float64)
    n, total = len(y), float(m.sum())
    if n == 0 or total == 0:
        return Estimate(None, None)
    r = float(y.sum()) / total
    if n < 2:
        return interval(r, math.nan, alpha)
    residual = y - r * m  # sums to zero, so its variance is its mean square
    se = math.sqrt(float(residual @ residual) / (n - 1) / n) / (total / n)
    return interval(r, se, alpha)


def difference(challenger: Estimate, champion: Estimate, alpha: float) -> Estimate:
    """``challenger - champion`` of two independent estimates."""
    if challenger.value is None or champion.value is None:
        return Estimate(None, None)
    a, b = challenger.se, champion.se
    se = math.hypot(a, b) if a is not None and b is not None else math.nan
    return interval(challenger.value - champion.value, se, alpha)


def sample_ratio(units: dict[str, int], shares: dict[str, float], alpha: float) -> dict:
    """Chi-square goodness of fit of the units per arm to the configured shares.

    A p-value below ``alpha`` (``experiment.srm_alpha``) flags a broken split: the arms no
    longer hold comparable populations, whatever their metrics say.
    """
    arms = list(shares)
    observed = np.array([units.get(a, 0) for a in arms], dtype=np.float64)
    total = observed.sum()
    out: dict = {"observed": {a: int(units.get(a, 0)) for a in arms}, "alpha": alpha}
    if total == 0:
        return out | {"expected": None, "chi2": None, "p_value": None, "flagged": False}
    weights = np.array([shares[a] for a in arms], dtype=np.float64)
    expected = total * weights / weights.sum()
    chi2, p = stats.chisquare(observed, expected)
    return out | {
        "expected": {a: round(float(e), 3) for a, e in zip(arms, expected, strict=True)},
        "chi2": float(chi2),
        "p_value": float(p),
        "flagged": bool(p < alpha),
    }


def log_msprt(delta: np.ndarray, variance: np.ndarray, tau2: float) -> np.ndarray:
    """The log of the mixture likelihood ratio of the mSPRT for ``delta`` against zero.

    Johari, Pekelis and Walsh (2017), section 4: with an estimate ``delta`` of the effect that
    is approximately normal with variance ``V`` (two arms: ``s_1^2/n_1 + s_0^2/n_0``; one
    sample: ``s^2/n``), and a normal mixture N(0, tau^2) over the effect under the alternative,

        Lambda_n = sqrt(V / (V + tau^2)) * exp(tau^2 delta^2 / (2 V (V + tau^2))).

    For two arms of n requests each with common variance sigma^2 (V = 2 sigma^2 / n) this is
    the paper's ``sqrt(2s^2 / (2s^2 + n tau^2)) exp(n^2 tau^2 delta^2 / (4 s^2 (2s^2 + n tau^2)))``.
    Rejecting when ``Lambda_n >= 1/alpha`` keeps the error rate at alpha however often it is read;
    the always-valid p-value is ``min(1, min over k <= n of 1/Lambda_k)``.
    """
    v = np.asarray(variance, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 0.5 * np.log(v / (v + tau2)) + tau2 * np.square(delta) / (2 * v * (v + tau2))
    return np.where(np.isfinite(out) & (v > 0), out, -np.inf)


@dataclass(frozen=True)
class Sequential:
    """The sequential test after the last request, and where it first decided."""

    decision: str  # challenger better | champion better | continue
    p_value: float  # always valid: the running minimum of 1 / Lambda
    estimate: float | None  # the effect (challenger minus champion) after the last request
    requests: int  # requests the test has read (samples of one-sample tests: see ``samples``)
    impressions: int
    samples: int  # the requests that enter the statistic (interleaving: those with a click)
    decided_at: dict | None  # {requests, impressions, samples, ts, estimate} at the first crossing

    def to_dict(self) -> dict:
        return {
            "decision": self.decision,
            "p_value": self.p_value,
            "estimate": self.estimate,
            "requests": self.requests,
            "impressions": self.impressions,
            "samples": self.samples,
            "decided_at": self.decided_at,
        }
