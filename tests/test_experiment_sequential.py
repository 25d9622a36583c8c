"""The always-valid sequential test (mSPRT): its formula, its decisions, its replay and its error rate."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from shoprank.experiments.outcomes import read_outcomes
from shoprank.experiments.report import TESTED, ab_report
from shoprank.experiments.sequential import replay_two_arms, running_ratio
from shoprank.experiments.stats import log_msprt, ratio_estimate
from shoprank.experiments.step import run_experiment
from tests.experiment_helpers import ab_records, experiment_params, write_log


def test_the_mixture_ratio_is_the_papers_formula_for_equal_arms():
    sigma2, tau2, n, delta = 0.8, 0.01, 500, 0.07  # Johari, Pekelis, Walsh (2017), two arms of n each
    paper = math.sqrt(2 * sigma2 / (2 * sigma2 + n * tau2)) * math.exp(
        n * n * tau2 * delta**2 / (4 * sigma2 * (2 * sigma2 + n * tau2))
    )
    ours = log_msprt(np.array([delta]), np.array([2 * sigma2 / n]), tau2)[0]
    assert ours == pytest.approx(math.log(paper), rel=1e-12)
    assert log_msprt(np.array([0.0]), np.array([0.0]), tau2)[0] == -math.inf  # no variance yet: no evidence


def test_a_clearly_worse_challenger_is_found_with_enough_data_and_not_with_little(tmp_path):
    params = experiment_params(tmp_path)
    write_log(params, ab_records({"control": 0.10, "treatment": 0.05}, 2000, seed=11))
    test = run_experiment(params)["sequential"]["treatment"]
    assert test["decision"] == "champion better" and test["p_value"] < 0.05
    assert test["decided_at"]["requests"] < 2000 and test["decided_at"]["estimate"] < 0
    assert test["decided_at"]["impressions"] == 5 * test["decided_at"]["requests"]

    little = experiment_params(tmp_path / "little")
    write_log(little, ab_records({"control": 0.10, "treatment": 0.05}, 150, seed=11))
    test = run_experiment(little)["sequential"]["treatment"]
    assert test["decision"] == "continue" and test["decided_at"] is None and test["p_value"] > 0.05


def test_a_better_challenger_on_purchases_is_found(tmp_path):
    params = experiment_params(tmp_path, metric="purchases", mixture_variance=0.001)
    records = ab_records({"control": 0.05, "treatment": 0.15}, 3000, seed=12, purchase_rate=0.5)
    write_log(params, records)
    test = run_experiment(params)["sequential"]["treatment"]
    assert test["decision"] == "challenger better" and test["decided_at"]["estimate"] > 0


def test_the_replay_decides_at_the_first_request_whose_ratio_crosses(tmp_path):
    params = experiment_params(tmp_path)
    feedback = write_log(params, ab_records({"control": 0.10, "treatment": 0.06}, 3000, seed=13))
    e = params.experiment
    requests = read_outcomes(feedback.read(), e, None).requests

    def first(k: int):
        head = requests.iloc[:k]
        return replay_two_arms(
            head, head["arm"] == "treatment", TESTED["ctr"], e.mixture_variance, e.alpha, e.min_units
        )

    full = first(len(requests))
    k = full.decided_at["requests"]
    assert full.decision == "champion better" and 2 * e.min_units <= k < len(requests)
    assert first(k - 1).decision == "continue"  # one request earlier, not yet
    assert first(k).decision == full.decision and first(k).decided_at == full.decided_at


def test_aa_data_rarely_rejects(tmp_path):
    """Twenty A/A experiments (the same click rate in both arms) in one log: at alpha 0.05 the
    always-valid test may reject about one; three or fewer is what an honest test gives nearly always."""
    params = experiment_params(tmp_path)
    names = [f"aa{seed}" for seed in range(20)]
    records = []
    for seed, name in enumerate(names):
        records += ab_records(
            {"control": 0.1, "treatment": 0.1}, 1200, seed=100 + seed, items=3, experiment=name
        )
    frame = write_log(params, records).read()
    decisions = []
    for name in names:
        e = params.experiment.model_copy(update={"name": name})
        decisions.append(ab_report(read_outcomes(frame, e, None), e)["sequential"]["treatment"]["decision"])
    assert len(decisions) == 20 and sum(d != "continue" for d in decisions) <= 3, decisions


def returning_users(seed: int, users: int = 300, per_user: int = 100) -> pd.DataFrame:
    """Requests (time order) of users who come back ``per_user`` times on average, each user in one
    arm and clicking never or at 0.2 per item (so a user's requests are alike), the same in both arms."""
    rng = np.random.default_rng(seed)
    n = users * per_user
    user = rng.integers(users, size=n)
    arm = np.where(rng.integers(2, size=users) == 1, "treatment", "control")[user]
    clicks = rng.binomial(3, rng.choice([0.0, 0.2], size=users)[user])
    ts = pd.date_range("2025-06-01", periods=n, freq="s", tz="UTC")
    return pd.DataFrame({"ts": ts, "unit": user, "arm": arm, "clicks": clicks, "impressions": 3})


def test_aa_with_returning_users_rarely_rejects_because_users_are_the_units():
    """The test's variance is over users: taking each request as independent would understate it
    and reject most of these A/A experiments."""
    by_user, by_request = [], []
    for seed in range(20):
        req = returning_users(seed)
        test = {"tau2": 1e-4, "alpha": 0.05, "min_units": 100}
        by_user.append(replay_two_arms(req, req["arm"] == "treatment", ("clicks", "impressions"), **test))
        req["unit"] = np.arange(len(req))  # every request its own unit
        by_request.append(replay_two_arms(req, req["arm"] == "treatment", ("clicks", "impressions"), **test))
    assert sum(t.decision != "continue" for t in by_user) <= 3
    assert sum(t.decision != "continue" for t in by_request) > 3  # the data is what makes the point


def test_the_running_variance_is_the_delta_method_over_units():
    rng = np.random.default_rng(0)
    n = 400
    unit = rng.integers(0, 60, size=n)
    y, m = rng.poisson(1.0, size=n).astype(float), rng.integers(1, 6, size=n).astype(float)
    take = rng.random(n) < 0.5
    units, ratio, var = running_ratio(y, m, take, unit)
    sums = pd.DataFrame({"u": unit[take], "y": y[take], "m": m[take]}).groupby("u").sum()
    whole = ratio_estimate(sums["y"].to_numpy(), sums["m"].to_numpy(), 0.05)
    assert units[-1] == len(sums) and ratio[-1] == pytest.approx(whole.value)
    assert var[-1] == pytest.approx(whole.se**2, rel=1e-9)
    k = n // 2  # and after any prefix of the rows
    head = (
        pd.DataFrame({"u": unit[:k][take[:k]], "y": y[:k][take[:k]], "m": m[:k][take[:k]]}).groupby("u").sum()
    )
    assert var[k - 1] == pytest.approx(
        ratio_estimate(head["y"].to_numpy(), head["m"].to_numpy(), 0.05).se ** 2
    )


def test_each_of_several_challengers_is_tested_at_a_bonferroni_level(tmp_path):
    arms = [
        {"name": "control", "model": "champion", "share": 0.4},
        {"name": "t1", "model": "lightgbm", "share": 0.3},
        {"name": "t2", "model": "popularity", "share": 0.3},
    ]
    params = experiment_params(tmp_path, arms=arms)
    shares = {a["name"]: a["share"] for a in arms}
    write_log(params, ab_records({"control": 0.1, "t1": 0.05, "t2": 0.1}, 3000, seed=14, shares=shares))
    report = run_experiment(params)
    assert {t["alpha"] for t in report["sequential"].values()} == {0.025}
    assert report["decisions"]["t1"] == "champion better"
    assert set(report["differences"]) == {"t1", "t2"} and report["arms"]["control"]["role"] == "champion"
