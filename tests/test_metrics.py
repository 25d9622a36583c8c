"""Evaluation metrics and the off-policy estimate, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import ndcg_score, roc_auc_score

from shoprank.evaluation.metrics import (
    expected_calibration_error,
    group_auc,
    log_loss,
    mrr,
    ndcg_at_k,
    reliability_curve,
)
from shoprank.evaluation.offpolicy import estimate_ctr, rank_within_requests, snips_ctr

L3, L5 = 1 / math.log2(3), 1 / math.log2(5)  # discounts of ranks 2 and 4: 0.63093, 0.43068


def test_log_loss_by_hand_and_clipped():
    # -(ln 0.8 + ln 0.6) / 2 = (0.223144 + 0.510826) / 2
    assert log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(0.366985, abs=1e-6)
    # p = 0 for a click is clipped to eps: -ln(0.01) = 4.60517, finite
    assert log_loss(np.array([1]), np.array([0.0]), eps=0.01) == pytest.approx(4.605170, abs=1e-6)
    assert math.isfinite(log_loss(np.array([1, 0]), np.array([0.0, 1.0])))
    with pytest.raises(ValueError):
        log_loss(np.array([2]), np.array([0.5]))


CAL_Y = np.array([0, 1, 1, 1, 1])
CAL_P = np.array([0.1, 0.3, 0.6, 0.9, 1.0])


def test_calibration_two_bins_by_hand():
    # bins [0, .5), [.5, 1]: bin 0 = {0.1, 0.3}: mean p 0.2, rate 1/2, n 2
    #                        bin 1 = {0.6, 0.9, 1.0}: mean p 2.5/3, rate 1, n 3
    # ECE = 2/5 * |0.2 - 0.5| + 3/5 * |0.8333 - 1| = 0.12 + 0.1 = 0.22
    assert expected_calibration_error(CAL_Y, CAL_P, bins=2) == pytest.approx(0.22)
    curve = reliability_curve(CAL_Y, CAL_P, bins=2)
    assert list(curve.columns) == ["bin", "mean_predicted", "observed_rate", "count"]
    assert curve["bin"].tolist() == [0, 1]
    assert curve["mean_predicted"].tolist() == pytest.approx([0.2, 2.5 / 3])
    assert curve["observed_rate"].tolist() == pytest.approx([0.5, 1.0])
    assert curve["count"].tolist() == [2, 3]


def test_calibration_skips_empty_bins_and_puts_one_in_last_bin():
    # five bins of width 0.2: 0.1 -> 0, 0.3 -> 1, 0.6 -> 3, 0.9 and 1.0 -> 4; bin 2 empty
    # ECE = (|0.1 - 0| + |0.3 - 1| + |0.6 - 1| + |1.9 - 2|) / 5 = 1.3 / 5
    assert expected_calibration_error(CAL_Y, CAL_P, bins=5) == pytest.approx(0.26)
    curve = reliability_curve(CAL_Y, CAL_P, bins=5)
    assert curve["bin"].tolist() == [0, 1, 3, 4]
    assert curve["count"].tolist() == [1, 1, 1, 2]
    assert curve["mean_predicted"].iloc[-1] == pytest.approx(0.95)
    with pytest.raises(ValueError):
        expected_calibration_error(CAL_Y, CAL_P + 0.5)


def test_perfectly_calibrated_predictions_have_small_ece():
    rng = np.random.default_rng(0)
    p = rng.random(200_000)
    y = (rng.random(len(p)) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.01
    assert expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.1


# Requests interleaved on purpose: rows of one request need not be adjacent.
GAUC = pd.DataFrame(
    [
        ("a", 1, 0.8),
        ("b", 0, 0.2),
        ("a", 0, 0.8),
        ("c", 0, 0.5),
        ("a", 0, 0.3),
        ("d", 1, 0.4),
        ("b", 1, 0.6),
        ("a", 1, 0.1),
        ("c", 0, 0.7),
        ("c", 0, 0.6),
    ],
    columns=["g", "y", "s"],
)


def test_group_auc_by_hand():
    # a: positives {0.8, 0.1}, negatives {0.8, 0.3}: pairs 0.5 + 1 + 0 + 0 = 1.5 of 4 -> 0.375
    # b: positive 0.6 > negative 0.2 -> 1.0; c (no click) and d (only a click) are skipped
    # weighted by impressions: (4 * 0.375 + 2 * 1.0) / 6 = 0.583333; unweighted (0.375 + 1) / 2
    y, s, g = GAUC["y"].to_numpy(), GAUC["s"].to_numpy(), GAUC["g"].to_numpy()
    assert group_auc(y, s, g) == pytest.approx(3.5 / 6)
    assert group_auc(y, s, g, weighted=False) == pytest.approx(0.6875)
    assert math.isnan(group_auc(np.array([0, 0, 1]), np.array([1, 2, 3]), np.array(["x", "x", "y"])))


def test_group_auc_matches_per_request_sklearn_on_random_data():
    rng = np.random.default_rng(3)
    g = rng.permutation(np.repeat(np.arange(200), rng.integers(1, 15, 200)))
    s = np.round(rng.random(len(g)), 1)  # many ties
    y = (rng.random(len(g)) < 0.3).astype(int)
    aucs, sizes = [], []
    for k in np.unique(g):
        m = g == k
        if 0 < y[m].sum() < m.sum():
            aucs.append(roc_auc_score(y[m], s[m]))
            sizes.append(m.sum())
    assert group_auc(y, s, g) == pytest.approx(np.average(aucs, weights=sizes))
    assert group_auc(y, s, g, weighted=False) == pytest.approx(np.mean(aucs))


RANK = pd.DataFrame(
    [
        ("a", 0, 0.9),
        ("a", 1, 0.7),
        ("b", 1, 0.5),
        ("a", 0, 0.5),
        ("b", 0, 0.5),  # tied with b's click
        ("c", 0, 0.4),
        ("a", 1, 0.1),
        ("c", 0, 0.3),
        ("d", 0, 0.1),
        ("d", 0, 0.2),
        ("d", 1, 0.3),
    ],
    columns=["g", "y", "s"],
)
# a: ranked labels 0 1 0 1 -> DCG = L3 + L5, IDCG = 1 + L3; @2: DCG = L3
# b: tie broken pessimistically -> 0 1 -> DCG = L3, IDCG = 1 (row order would give 1.0)
# c: no click, excluded; d: click ranked first -> 1.0
NDCG_A10, NDCG_A2 = (L3 + L5) / (1 + L3), L3 / (1 + L3)  # 0.650930, 0.386853


def test_ndcg_by_hand():
    y, s, g = RANK["y"].to_numpy(), RANK["s"].to_numpy(), RANK["g"].to_numpy()
    assert ndcg_at_k(y, s, g, k=10) == pytest.approx((NDCG_A10 + L3 + 1) / 3)
    assert ndcg_at_k(y, s, g, k=2) == pytest.approx((NDCG_A2 + L3 + 1) / 3)
    assert ndcg_at_k(y, s, g, k=1) == pytest.approx((0 + 0 + 1) / 3)
    assert math.isnan(ndcg_at_k(np.zeros(3), np.arange(3), np.array(["x", "x", "y"])))


def test_ndcg_graded_labels():
    # labels 2 1 0, ranked by score as 1 0 2: gains 2**y - 1 = 1 0 3
    # DCG = 1 + 0 + 3 / log2(4) = 2.5; ideal 3 1 0: IDCG = 3 + L3
    y, s = np.array([2, 1, 0]), np.array([0.1, 0.9, 0.5])
    assert ndcg_at_k(y, s, np.zeros(3)) == pytest.approx(2.5 / (3 + L3))


def test_ndcg_matches_sklearn_without_ties():
    rng = np.random.default_rng(4)
    g = rng.permutation(np.repeat(np.arange(150), rng.integers(2, 25, 150)))
    s, y = rng.random(len(g)), (rng.random(len(g)) < 0.2).astype(int)
    ref = [ndcg_score([y[g == k]], [s[g == k]], k=10) for k in np.unique(g) if y[g == k].any()]
    assert ndcg_at_k(y, s, g, k=10) == pytest.approx(np.mean(ref))


def test_mrr_by_hand():
    # a: first click at rank 2 -> 1/2; b: pessimistic tie -> rank 2 -> 1/2; c excluded; d: 1
    y, s, g = RANK["y"].to_numpy(), RANK["s"].to_numpy(), RANK["g"].to_numpy()
    assert mrr(y, s, g) == pytest.approx((0.5 + 0.5 + 1) / 3)
    assert math.isnan(mrr(np.zeros(2), np.arange(2), np.array([1, 2])))


def test_rank_within_requests_breaks_ties_by_row_order():
    # x: rows 0 (0.2), 2 (0.9), 3 (0.2) -> 2, 1, 3; y: rows 1 (0.5), 4 (0.1) -> 1, 2
    pos = rank_within_requests(np.array(["x", "y", "x", "x", "y"]), np.array([0.2, 0.5, 0.9, 0.2, 0.1]))
    assert pos.tolist() == [2, 1, 1, 3, 2]


# r1: target swaps the logged order (no match); r2 and r3: target keeps it (all match)
SNIPS_LOG = pd.DataFrame(
    {
        "request_id": ["r1", "r1", "r2", "r2", "r3", "r3"],
        "position": [1, 2, 1, 2, 1, 2],
        "clicked": [0, 1, 1, 0, 0, 1],
        "propensity": [0.5, 0.25, 0.8, 0.4, 0.5, 0.2],
    }
)
SNIPS_SCORES = np.array([0.1, 0.9, 0.9, 0.1, 0.9, 0.1])


def test_snips_by_hand():
    # matched weights 1 / p0: r2 1.25 (click), 2.5; r3 2.0, 5.0 (click); sum w = 10.75
    # SNIPS = (1.25 + 5) / 10.75; IPS = 6.25 / 6 slots; logged CTR 3 / 6
    # ESS = 10.75**2 / (1.25**2 + 2.5**2 + 2**2 + 5**2) = 115.5625 / 36.8125
    est = estimate_ctr(SNIPS_LOG, SNIPS_SCORES)
    assert est.ctr == pytest.approx(6.25 / 10.75)
    assert est.ips_ctr == pytest.approx(6.25 / 6)
    assert est.logged_ctr == pytest.approx(0.5)
    assert est.ess == pytest.approx(115.5625 / 36.8125)
    assert (est.n_slots, est.n_matched) == (6, 4)


def test_snips_top_positions_only():
    # position 1 only: r1 no match; r2 w 1.25 click; r3 w 2.0 no click
    # SNIPS = 1.25 / 3.25; logged 1 / 3; ESS = 3.25**2 / (1.25**2 + 2**2)
    est = estimate_ctr(SNIPS_LOG, SNIPS_SCORES, max_position=1)
    assert est.ctr == pytest.approx(1.25 / 3.25)
    assert est.logged_ctr == pytest.approx(1 / 3)
    assert est.ess == pytest.approx(10.5625 / 5.5625)
    assert (est.n_slots, est.n_matched) == (3, 2)
    # delta method: sqrt(1.25^2 (1 - c)^2 + 2^2 (0 - c)^2) / 3.25 with c = 1.25 / 3.25
    c = 1.25 / 3.25
    assert est.se == pytest.approx(math.sqrt(1.25**2 * (1 - c) ** 2 + 4 * c**2) / 3.25)


def test_snips_without_matches_and_bad_propensities():
    log = SNIPS_LOG[SNIPS_LOG["request_id"] == "r1"]
    est = estimate_ctr(log, SNIPS_SCORES[:2])
    assert math.isnan(est.ctr) and est.ess == 0.0 and est.n_matched == 0
    for bad in (0.0, np.nan, 1.5):
        with pytest.raises(ValueError):
            snips_ctr(np.array([1]), np.array([1]), np.array([bad]), np.array([1]))


def test_snips_recovers_the_ctr_of_a_better_policy():
    """Logging: per request, a poor fixed order with prob 0.7, else a uniform shuffle.

    P0(item at k) = 0.7 * [poor order puts it at k] + 0.3 / M, exactly. Clicks follow the
    item-position model exam(k) * attr(item). The target ranks by true attractiveness,
    so its CTR is known exactly: mean over requests and slots of exam(k) * sorted attr.
    """
    rng = np.random.default_rng(7)
    n, m, eps = 40_000, 5, 0.3
    exam = 1 / np.arange(1, m + 1)
    attr = rng.uniform(0.02, 0.6, (n, m))
    poor = np.argsort(attr + rng.normal(0, 0.1, (n, m)), axis=1)  # mostly worst first
    shuffle = np.argsort(rng.random((n, m)), axis=1)
    explore = rng.random(n) < eps
    shown = np.where(explore[:, None], shuffle, poor)  # (n, m) item at each position
    poor_pos = np.argsort(poor, axis=1)  # (n, m) position of each item in the poor order
    shown_poor_pos = np.take_along_axis(poor_pos, shown, axis=1)
    prop = (1 - eps) * (shown_poor_pos == np.arange(m)) + eps / m
    shown_attr = np.take_along_axis(attr, shown, axis=1)
    clicked = rng.random((n, m)) < exam * shown_attr
    log = pd.DataFrame(
        {
            "request_id": np.repeat(np.arange(n), m),
            "position": np.tile(np.arange(1, m + 1), n),
            "clicked": clicked.ravel().astype(int),
            "propensity": prop.ravel(),
        }
    )
    truth = float(np.mean(exam * -np.sort(-attr, axis=1)))
    est = estimate_ctr(log, shown_attr.ravel())
    assert truth > 1.3 * est.logged_ctr  # the naive logged CTR is far off
    assert est.ctr == pytest.approx(truth, rel=0.03)  # about 3 standard errors
    assert est.ess > 1000
    # the weights do the work: matched slots without 1 / p0 are badly biased
    unweighted = estimate_ctr(log.assign(propensity=1.0), shown_attr.ravel())
    assert abs(unweighted.ctr - truth) > 0.15 * truth
    # the poor order itself, scored as a deterministic policy, is recovered too
    poor_truth = float(np.mean(exam * np.take_along_axis(attr, poor, axis=1)))
    poor_scores = -shown_poor_pos.ravel()  # earlier in the poor order scores higher
    assert estimate_ctr(log, poor_scores).ctr == pytest.approx(poor_truth, rel=0.03)


def revenue_truth_of(attractiveness, p_purchase, price, legacy):
    """One request's ground truth: candidates with their true click, purchase and price."""
    from shoprank.evaluation.evaluate import Truth

    n = len(attractiveness)
    cand = pd.DataFrame(
        {
            "request_id": "r1",
            "item_id": [f"i{j}" for j in range(n)],
            "attractiveness": attractiveness,
            "p_purchase": p_purchase,
            "price": price,
            "legacy_score": legacy,
        }
    )
    return Truth(np.zeros(0), cand, np.array([1.0, 0.5]))


def test_expected_revenue_by_hand():
    from shoprank.evaluation.oracle import expected_revenue, revenue_truth

    truth = revenue_truth_of([0.5, 0.2, 0.4], [0.1, 0.5, 0.2], [10.0, 100.0, 50.0], [3, 2, 1])
    cand, exam = truth.candidates, truth.examination
    # top 2 by these scores: item 0 at 1 (0.5 * 0.1 * 10 = 0.5), item 2 at 2 (0.5 * 0.4 * 0.2 * 50 = 2.0)
    assert expected_revenue(cand, np.array([3, 1, 2]), exam, k=2) == pytest.approx(2.5)
    # the oracle orders by true expected sales: item 1 (10.0), item 2 (4.0 * 0.5)
    assert expected_revenue(cand, revenue_truth(cand), exam, k=2) == pytest.approx(12.0)


def test_ranking_by_revenue_earns_more_sales_and_fewer_clicks_than_by_clicks():
    from shoprank.evaluation.evaluate import Pool, rerank_metrics

    rng = np.random.default_rng(0)
    n = 30
    attr, buy, price = rng.uniform(0.05, 0.6, n), rng.uniform(0.05, 0.5, n), rng.lognormal(3, 1, n)
    truth = revenue_truth_of(attr, buy, price, rng.random(n))
    logged = pd.DataFrame(
        {"request_id": ["r1"], "item_id": ["i0"], "position": [1], "clicked": [1], "propensity": [0.5]}
    )
    pool = Pool(attr, buy)  # a model that knows the truth
    by_clicks = rerank_metrics(pool, logged, truth, "clicks")
    by_revenue = rerank_metrics(pool, logged, truth, "revenue")
    assert by_revenue["expected_revenue@10"] > by_clicks["expected_revenue@10"]
    assert by_revenue["expected_clicks@10"] < by_clicks["expected_clicks@10"]
    assert by_revenue["expected_revenue@10"] == pytest.approx(by_revenue["expected_revenue@10_oracle"])
    assert by_revenue["revenue_uplift_share"] == pytest.approx(1.0)


def test_purchase_metrics_and_why_they_are_missing():
    from shoprank.evaluation.evaluate import not_computed, purchase_metrics

    df = pd.DataFrame({"clicked": [1, 1, 1, 0, 0], "purchased": [1, 0, 0, 0, 0]})
    p_click = np.array([0.5, 0.5, 0.4, 0.1, 0.2])
    got = purchase_metrics(df, p_click, np.array([0.9, 0.2, 0.1, 0.5, 0.5]))
    assert got["purchase_auc"] == pytest.approx(1.0) and got["purchase_auc_clicked"] == pytest.approx(1.0)
    assert got["purchase_logloss"] > 0
    assert purchase_metrics(df, p_click, None) == {}  # no purchase head
    no_purchases = df.assign(purchased=0)
    assert purchase_metrics(no_purchases, p_click, np.full(5, 0.5)) == {}
    for log in (no_purchases, df.drop(columns=["purchased"])):
        reasons = not_computed({}, log, None)
        assert "no purchases" in reasons["purchase_auc"]
        assert "ground truth" in reasons["expected_revenue@10"]
    assert "purchase_auc" not in not_computed(got, df, None)
