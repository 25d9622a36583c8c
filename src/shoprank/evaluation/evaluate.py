"""`shoprank evaluate`: every candidate on the same time-based test split.

Two kinds of scores per model: with the logged position (the click likelihood: AUC, log
loss, calibration) and position-free relevance (what a ranking uses: group AUC, NDCG,
MRR, re-ranking, off-policy CTR). On simulated data the ground truth adds the ratio to
the Bayes-optimal AUC and expected clicks of re-ranking each request's full candidate set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from shoprank.evaluation import metrics as M
from shoprank.evaluation.offpolicy import rank_within_requests, snips_ctr
from shoprank.evaluation.oracle import expected_clicks
from shoprank.inputs.frame import Frame
from shoprank.models.scorers import Scorer

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
)


@dataclass
class Truth:
    """What only a simulator knows, aligned with the frames being evaluated."""

    p_click: np.ndarray  # true click probability of each test impression
    candidates: pd.DataFrame  # request_id, item_id, attractiveness, legacy_score per candidate row
    examination: np.ndarray  # by position, 1-based positions at index 0..
    covered: np.ndarray | None = None  # per test row: the simulator's (not the service's feedback)

    def rows(self, n: int) -> np.ndarray:
        return np.ones(n, bool) if self.covered is None else self.covered


def _rows(mask: np.ndarray, y: np.ndarray, p: np.ndarray) -> float:
    return M.auc(y[mask], p[mask]) if mask.any() else float("nan")


def evaluate_scorer(
    scorer: Scorer,
    test: Frame,
    train_queries: set[str],
    truth: Truth | None = None,
    candidate_scores: np.ndarray | None = None,
    cold: np.ndarray | None = None,
) -> tuple[dict[str, float], pd.DataFrame]:
    """(metrics, reliability curve) of one model on the test frame.

    ``candidate_scores`` are the model's position-free scores of every retrieved candidate
    of the test requests, aligned with ``truth.candidates``. ``cold``: per test row, its item
    had no impression before the row's day. A metric that cannot be computed on this log
    (no rows of its kind, no propensities, no truth) is absent: see :func:`not_computed`.
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
    if candidate_scores is not None and truth is not None:
        out.update(rerank_metrics(candidate_scores, df[truth.rows(len(df))], truth))
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


def not_computed(metrics: dict[str, float], df: pd.DataFrame, truth: Truth | None) -> dict[str, str]:
    """Why each metric that a simulated log would have is absent from ``metrics``."""
    reasons = {}
    if truth is None:
        for key in TRUTH_KEYS:
            reasons[key] = "no ground truth: only a simulated log knows the true click probabilities"
    if not has_propensities(df) and truth is None:
        for key in OFF_POLICY_KEYS:
            reasons[key] = "the log has no logging propensities (column propensity absent or incomplete)"
    for key, rows in SUBSETS.items():
        if key not in metrics:
            reasons[key] = f"no test rows of {rows}, or they are all clicks or all not"
    return reasons


def rerank_metrics(scores: np.ndarray, logged: pd.DataFrame, truth: Truth) -> dict[str, float]:
    """Expected top-10 clicks of re-ranking every candidate by ``scores``, and SNIPS over the full pool."""
    cand = truth.candidates
    model = expected_clicks(cand, scores, truth.examination, TOP_K)
    legacy = expected_clicks(cand, cand["legacy_score"].to_numpy(), truth.examination, TOP_K)
    oracle = expected_clicks(cand, cand["attractiveness"].to_numpy(), truth.examination, TOP_K)
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
    }
