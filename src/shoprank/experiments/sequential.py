"""The always-valid sequential test replayed over requests in time order (:func:`.stats.log_msprt`).

After each request the effect estimate and its variance are recomputed from running sums
over the randomisation units (vectorised, so a replay over millions of requests costs a few
array passes), the mixture likelihood ratio is evaluated, and the first request at which it
reaches ``1/alpha`` is the decision: the test stops there, and the report keeps that decision
even if later data would cross back. Until each side has ``min_units`` units the test does
not decide: the normal approximation of the estimate, and the variance read from the data,
need them.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from shoprank.experiments.stats import (
    CHALLENGER_BETTER,
    CHAMPION_BETTER,
    CONTINUE,
    Sequential,
    log_msprt,
)


def _running(x: np.ndarray, take: np.ndarray) -> np.ndarray:
    return np.cumsum(np.where(take, x, 0.0))


def _earlier(x: np.ndarray, unit: np.ndarray) -> np.ndarray:
    """Per row, the sum of ``x`` over the earlier rows of its unit."""
    return pd.Series(x).groupby(unit).cumsum().to_numpy() - x


def running_ratio(
    y: np.ndarray, m: np.ndarray, take: np.ndarray, unit: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """After each row: (units, ``sum(y) / sum(m)`` over the rows in ``take``, its variance).

    The variance is the delta method's over units (:func:`.stats.ratio_estimate` of the unit
    sums), kept up to date as rows arrive: when a unit with sums ``(Y, M)`` gets a row
    ``(y, m)``, ``sum Y^2`` grows by ``2Yy + y^2``, ``sum M^2`` by ``2Mm + m^2`` and ``sum YM``
    by ``Ym + yM + ym``. A per-request mean is the ratio with ``m = 1`` per request.
    """
    y = np.where(take, np.asarray(y, dtype=np.float64), 0.0)
    m = np.where(take, np.asarray(m, dtype=np.float64), 0.0)
    before_y, before_m = _earlier(y, unit), _earlier(m, unit)
    first = take & (_earlier(take.astype(np.float64), unit) == 0)
    n = np.cumsum(first).astype(np.float64)
    sy, sm = np.cumsum(y), np.cumsum(m)
    syy = np.cumsum(2 * before_y * y + y * y)
    smm = np.cumsum(2 * before_m * m + m * m)
    sym = np.cumsum(before_y * m + y * before_m + y * m)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = sy / sm
        residual = np.clip(syy - 2 * r * sym + r * r * smm, 0, None)  # sum over units of (Y - r M)^2
        var = residual / (n - 1) / n / np.square(sm / n)
    return n, r, var


def _decide(
    delta: np.ndarray,
    var: np.ndarray,
    ready: np.ndarray,
    counts: dict[str, np.ndarray],
    ts: pd.Series,
    tau2: float,
    alpha: float,
) -> Sequential:
    """The decision of the first row whose mixture ratio reaches ``1/alpha`` (``ready`` rows only)."""
    total = len(delta)
    last = {k: int(v[-1]) if total else 0 for k, v in counts.items()}
    if total == 0:
        return Sequential(CONTINUE, 1.0, None, 0, 0, 0, None)
    log_lr = np.where(ready, log_msprt(delta, var, tau2), -np.inf)
    p = float(min(1.0, math.exp(-float(log_lr.max()))))
    crossed = np.flatnonzero(log_lr >= math.log(1 / alpha))
    estimate = float(delta[-1]) if math.isfinite(delta[-1]) else None
    if not len(crossed):
        return Sequential(CONTINUE, p, estimate, last["requests"], last["impressions"], last["samples"], None)
    k = int(crossed[0])
    decision = CHALLENGER_BETTER if delta[k] > 0 else CHAMPION_BETTER
    at: dict[str, int | float | str] = {name: int(v[k]) for name, v in counts.items()}
    at |= {"ts": pd.Timestamp(ts.iloc[k]).isoformat(), "estimate": float(delta[k])}
    return Sequential(decision, p, estimate, last["requests"], last["impressions"], last["samples"], at)


def _units(requests: pd.DataFrame) -> np.ndarray:
    return pd.factorize(requests["unit"])[0]


def replay_two_arms(
    requests: pd.DataFrame,
    challenger: pd.Series,
    metric: tuple[str, str],
    tau2: float,
    alpha: float,
    min_units: int,
) -> Sequential:
    """The test of challenger minus champion on ``requests`` (time order; each row one request).

    ``challenger``: per row, whether it is the challenger's (else the champion's). ``metric``:
    the (numerator, denominator) columns of a ratio of sums over units, e.g. ``("clicks",
    "impressions")`` for the CTR or ``("purchases", "requests")`` for purchases per request
    (``requests`` is 1 per row).
    """
    is_b = challenger.to_numpy(dtype=bool)
    rows = requests.assign(requests=1)
    y, m, unit = rows[metric[0]].to_numpy(), rows[metric[1]].to_numpy(), _units(rows)
    (n0, e0, v0), (n1, e1, v1) = (running_ratio(y, m, take, unit) for take in (~is_b, is_b))
    ready = (n0 >= max(min_units, 2)) & (n1 >= max(min_units, 2))
    requests_seen = np.arange(1, len(requests) + 1)
    counts = {
        "requests": requests_seen,
        "impressions": np.cumsum(requests["impressions"].to_numpy()),
        "samples": requests_seen,
    }
    return _decide(e1 - e0, v0 + v1, ready, counts, requests["ts"], tau2, alpha)


def replay_one_sample(
    requests: pd.DataFrame, column: str, take: pd.Series, tau2: float, alpha: float, min_units: int
) -> Sequential:
    """The test of the mean of ``column`` over the rows in ``take`` against zero (interleaving wins)."""
    keep = take.to_numpy(dtype=bool)
    ones = np.ones(len(requests))
    n, mean, var = running_ratio(requests[column].to_numpy(), ones, keep, _units(requests))
    samples = np.cumsum(keep)
    counts = {
        "requests": np.arange(1, len(requests) + 1),
        "impressions": np.cumsum(requests["impressions"].to_numpy()),
        "samples": samples,
    }
    return _decide(mean, var, n >= max(min_units, 2), counts, requests["ts"], tau2, alpha)
