"""A request's arm and the team-draft merge: pure functions, checked on their own."""

from __future__ import annotations

import numpy as np
import pytest

from shoprank.config_experiment import Arm, Experiment
from shoprank.experiments.assign import arm_for, bucket, unit_key
from shoprank.experiments.interleave import team_draft


def experiment(name: str = "exp1", shares=(0.5, 0.3, 0.2), unit: str = "user") -> Experiment:
    models = ["champion", "legacy", "lightgbm"]
    arms = [Arm(name=f"arm{i}", model=models[i], share=s) for i, s in enumerate(shares)]
    return Experiment(name=name, arms=arms, unit=unit)


def test_units_split_by_the_shares_and_a_unit_keeps_its_arm():
    e = experiment()
    arms = [arm_for(e, f"ps_{i:06d}").name for i in range(20000)]
    counts = {a: arms.count(a) / len(arms) for a in set(arms)}
    assert counts == pytest.approx({"arm0": 0.5, "arm1": 0.3, "arm2": 0.2}, abs=0.015)
    assert [arm_for(e, f"ps_{i:06d}").name for i in range(200)] == arms[:200]  # deterministic
    other = experiment(name="exp2")  # a new experiment splits the shoppers afresh
    moved = sum(arm_for(other, f"ps_{i:06d}").name != arms[i] for i in range(2000))
    assert 600 < moved < 1600
    assert 0 <= bucket("exp1", "x") < 1


def test_the_unit_is_the_shopper_unless_anonymous_or_set_to_the_request():
    assert unit_key(experiment(), "ps_1", "r_9") == "ps_1"
    assert unit_key(experiment(), None, "r_9") == "r_9"
    assert unit_key(experiment(unit="request"), "ps_1", "r_9") == "r_9"


def test_team_draft_takes_each_rankers_best_in_turn():
    a, b = np.array([0, 1, 2, 3, 4]), np.array([4, 3, 2, 1, 0])
    merged = team_draft(a, b, 4, np.random.default_rng(0))
    assert len(set(merged.order.tolist())) == 4
    picked = {t: merged.order[merged.team == t].tolist() for t in (0, 1)}
    assert picked[0] == [0, 1] and picked[1] == [4, 3]  # each team its own best not yet shown
    assert merged.propensity.tolist() == [0.5] * 4  # every round's order came from a coin
    # the same top item in both lists: whichever team picks it first takes it, the other its next
    same = team_draft(np.array([7, 1, 2]), np.array([7, 2, 1]), 3, np.random.default_rng(1))
    assert same.order[0] == 7 and sorted(same.order.tolist()) == [1, 2, 7]


def test_team_draft_coin_is_fair_and_a_spent_list_leaves_the_page_to_the_other():
    firsts = [
        team_draft(np.arange(4), np.arange(4)[::-1], 2, np.random.default_rng(s)).team[0] for s in range(2000)
    ]
    assert np.mean(firsts) == pytest.approx(0.5, abs=0.04)
    short = team_draft(np.array([0, 1, 2, 3, 4]), np.array([4]), 5, np.random.default_rng(3))
    assert sorted(short.order.tolist()) == [0, 1, 2, 3, 4] and (short.team == 1).sum() == 1
    assert short.propensity[-1] == 1.0  # no coin decided the last picks
