"""`shoprank evaluate`: every candidate on the same time-based test split.

Two kinds of scores per model: with the logged position (the click likelihood: AUC, log
loss, calibration) and position-free relevance (what a ranking uses: group AUC, NDCG,
MRR, re-ranking, off-policy CTR). On simulated data the ground truth adds the ratio to
the Bayes-optimal AUC and expected clicks of re-ranking each request's full candidate set.

Re-ranking orders the candidates by ``serve.objective`` (models/objective.py), as the
service does: expected clicks and expected sales of that order, of the legacy engine's and
of each oracle's. The per-request click metrics (group AUC, NDCG, MRR) rank the logged
items by P(click) whatever the objective: they measure the click model. A candidate with a
purchase head adds its purchase metrics on the logged purchases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shoprank.evaluation import metrics as M
from shoprank.evaluation.offpolicy import rank_within_requests, snips_ctr
from shoprank.evaluation.oracle import expected_clicks, expected_revenue, revenue_truth
from shoprank.inputs.frame import Frame
from shoprank.models.objective import objective_scores
from shoprank.models.scorers import Scorer, purchase_given_click

TOP_K = 10
# the headline keys of every candidate's entry in metrics/evaluate.json (what the CLI prints)
HEADLINE = (
    "auc",
    "logloss",
    "gauc",
    f"ndcg@{TOP_K}",
    "mrr",
    "ece",
    "auc_new_items",
    "auc_cold_items",
    "auc_unseen_queries",
    "auc_over_oracle",
    "oracle_uplift_share",
    "snips_ctr",
    "purchase_auc",
    "revenue_uplift_share",
)


@dataclass
class Truth:
    """What only a simulator knows, aligned with the frames being evaluated."""

    p_click: np.ndarray  # true click probability of each test impression
    # request_id, item_id, attractiveness, legacy_score per candidate row; p_purchase
    # (P(purchase | click)) and price when the simulator wrote them
    candidates: pd.DataFrame
    examination: np.ndarray  # by position, 1-based positions at index 0..
    covered: np.ndarray | None = None  # per test row: the simulator's (not the service's feedback)

    def rows(self, n: int) -> np.ndarray:
        return np.ones(n, bool) if self.covered is None else self.covered

    @property
    def has_purchases(self) -> bool:
        return {"p_purchase", "price"} <= set(self.candidates.columns)


@dataclass
class Pool:
    """A scorer's position-free view of every retrieved candidate, aligned with ``truth.candidates``."""

    click: np.ndarray  # P(click)
    purchase: np.ndarray | None = None  # P(purchase | click); None without a purchase head


def _rows(mask: np.ndarray, y: np.ndarray, p: np.ndarray) -> float:
    return M.auc(y[mask], p[mask]) if mask.any() else float("nan")


def evaluate_scorer(
    scorer: Scorer,
    test: Frame,
    train_queries: set[str],
    truth: Truth | None = None,
    pool: Pool | None = None,
    cold: np.ndarray | None = None,
    objective: str = "clicks",
) -> tuple[dict[str, float], pd.DataFrame]:
    """(metrics, reliability curve) of one model on the test frame.

    ``pool``: the model's position-free scores of every retrieved candidate of the test
    requests, aligned with ``truth.candidates``; they are re-ranked by ``objective``.
    ``cold``: per test row, its item had no impression before the row's day. A metric that
    cannot be computed on this log (no rows of its kind, no propensities, no truth, no
    purchases) is absent: see :func:`not_computed`.
    """
    df = test.df
    y = df["clicked"].to_numpy()
    groups = df["request_id"].to_numpy()
    p = np.clip(scorer.predict(test, with_position=True), 1e-7, 1 - 1e-7)
    rel = scorer.predict(test, with_position=False)
    new = df["item_is_new"].to_numpy() == 1 if "item_is_new" in df else np.zeros(len(df), bool)
    query = df["query"].fillna("").to_numpy()
    unseen = (query != "") & ~pd.Series(query).isin(train_queries).to_numpy()
    cold = np.zeros(len(df), bool) if cold is None else np.asarray(cold, bool)
    out = {
        "auc": M.auc(y, p),
        "logloss": M.log_loss(y, p),
        "gauc": M.group_auc(y, rel, groups),
        f"ndcg@{TOP_K}": M.ndcg_at_k(y, rel, groups, TOP_K),
        "mrr": M.mrr(y, rel, groups),
        "ece": M.expected_calibration_error(y, p),
        "auc_new_items": _rows(new, y, p),
        "auc_cold_items": _rows(cold, y, p),
        "auc_unseen_queries": _rows(unseen, y, p),
        "share_new_items": float(new.mean()),
        "share_cold_items": float(cold.mean()),
        "share_unseen_queries": float(unseen.mean()),
    }
    if truth is not None:
        sim = truth.rows(len(df))
        out["bayes_auc"] = M.auc(y[sim], truth.p_click[sim])
        out["auc_over_oracle"] = M.auc(y[sim], p[sim]) / out["bayes_auc"]
    out.update(purchase_metrics(df, p, purchase_given_click(scorer, test)))
    if pool is not None and truth is not None:
        out.update(rerank_metrics(pool, df[truth.rows(len(df))], truth, objective))
    elif has_propensities(df):  # re-rank the logged items only (exact when the log holds every candidate)
        target = rank_within_requests(groups, rel)
        est = snips_ctr(df["position"], y, df["propensity"], target)
        out.update({"snips_ctr": est.ctr, "snips_ess": est.ess, "logged_ctr": est.logged_ctr})
    return {k: float(v) for k, v in out.items() if np.isfinite(v)}, M.reliability_curve(y, p)


def has_propensities(df: pd.DataFrame) -> bool:
    """Every logged row carries its logging propensity (off-policy estimates need them all)."""
    return "propensity" in df and bool(df["propensity"].notna().all()) and len(df) > 0


SUBSETS = {  # metric -> the rows it is computed on, for the reason it can be missing
    "auc_new_items": "items listed within features.new_item_days",
    "auc_cold_items": "items with no impression before the row's day",
    "auc_unseen_queries": "queries never seen in training",
}
TRUTH_KEYS = ("bayes_auc", "auc_over_oracle", "oracle_uplift_share", "expected_clicks@10")
OFF_POLICY_KEYS = ("snips_ctr", "snips_ess", "logged_ctr")
PURCHASE_KEYS = ("purchase_auc", "purchase_logloss", "purchase_auc_clicked")
REVENUE_KEYS = ("expected_revenue@10", "revenue_uplift_share")


def not_computed(metrics: dict[str, float], df: pd.DataFrame, truth: Truth | None) -> dict[str, str]:
    """Why each metric that a simulated log would have is absent from ``metrics``."""
    reasons = {}
    if truth is None:
        for key in TRUTH_KEYS:
            reasons[key] = "no ground truth: only a simulated log knows the true click probabilities"
    if not has_purchases(df):
        why = "the log records no purchases (no purchased column, or none set): the purchase heads are off"
        for key in PURCHASE_KEYS:
            reasons[key] = why
    if truth is None or not truth.has_purchases:
        for key in REVENUE_KEYS:
            reasons[key] = "no ground truth of purchase probabilities and prices (a simulated log has them)"
    if not has_propensities(df) and truth is None:
        for key in OFF_POLICY_KEYS:
            reasons[key] = "the log has no logging propensities (column propensity absent or incomplete)"
    for key, rows in SUBSETS.items():
        if key not in metrics:
            reasons[key] = f"no test rows of {rows}, or they are all clicks or all not"
    return reasons


def has_purchases(df: pd.DataFrame) -> bool:
    """The logged rows hold at least one purchase (the training set fills a missing column with 0)."""
    return "purchased" in df and bool((df["purchased"].fillna(0) > 0).any())


def purchase_metrics(df: pd.DataFrame, p_click: np.ndarray, p_buy: np.ndarray | None) -> dict[str, float]:
    """Purchase AUC and log loss of P(click at the logged position) * P(purchase | click) over
    every logged impression, and the AUC of P(purchase | click) on the clicked rows."""
    if p_buy is None or not has_purchases(df):
        return {}
    bought = df["purchased"].fillna(0).to_numpy() > 0
    p = np.clip(p_click * p_buy, 1e-7, 1 - 1e-7)
    clicked = df["clicked"].to_numpy() == 1
    return {
        "purchase_auc": M.auc(bought, p),
        "purchase_logloss": M.log_loss(bought, p),
        "purchase_auc_clicked": _rows(clicked, bought, p_buy),
    }


def rerank_metrics(
    pool: Pool, logged: pd.DataFrame, truth: Truth, objective: str = "clicks"
) -> dict[str, float]:
    """Expected top-10 clicks and sales of re-ranking every candidate by ``objective``, and SNIPS
    over the full pool."""
    cand = truth.candidates
    price = cand["price"].to_numpy() if "price" in cand else None
    scores = objective_scores(objective, pool.click, pool.purchase, price)
    model = expected_clicks(cand, scores, truth.examination, TOP_K)
    legacy = expected_clicks(cand, cand["legacy_score"].to_numpy(), truth.examination, TOP_K)
    oracle = expected_clicks(cand, cand["attractiveness"].to_numpy(), truth.examination, TOP_K)
    revenue = revenue_metrics(scores, truth) if truth.has_purchases else {}
    # where the model would put each logged item among its request's full candidate set
    target = rank_within_requests(cand["request_id"].to_numpy(), scores)
    where = pd.Series(target, index=pd.MultiIndex.from_frame(cand[["request_id", "item_id"]]))
    logged_target = where.reindex(pd.MultiIndex.from_frame(logged[["request_id", "item_id"]])).to_numpy()
    est = snips_ctr(
        logged["position"],
        logged["clicked"],
        logged["propensity"],
        np.nan_to_num(logged_target, nan=0).astype(np.int64),
    )
    return {
        "expected_clicks@10": model,
        "expected_clicks@10_legacy": legacy,
        "expected_clicks@10_oracle": oracle,
        "oracle_uplift_share": (model - legacy) / (oracle - legacy) if oracle > legacy else float("nan"),
        "snips_ctr": est.ctr,
        "snips_ess": est.ess,
        "logged_ctr": est.logged_ctr,
        **revenue,
    }


def revenue_metrics(scores: np.ndarray, truth: Truth) -> dict[str, float]:
    """Expected top-10 sales of ranking by ``scores``, by the legacy engine and by the true
    expected sales (the revenue oracle), and the model's share of the oracle's uplift."""
    cand, exam = truth.candidates, truth.examination
    model = expected_revenue(cand, scores, exam, TOP_K)
    legacy = expected_revenue(cand, cand["legacy_score"].to_numpy(), exam, TOP_K)
    oracle = expected_revenue(cand, revenue_truth(cand), exam, TOP_K)
    return {
        f"expected_revenue@{TOP_K}": model,
        f"expected_revenue@{TOP_K}_legacy": legacy,
        f"expected_revenue@{TOP_K}_oracle": oracle,
        "revenue_uplift_share": (model - legacy) / (oracle - legacy) if oracle > legacy else float("nan"),
    }
