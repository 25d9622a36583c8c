"""The experiment section of params.yaml: what a bad one says, at load."""

from __future__ import annotations

import pytest

from shoprank.config import ParamsError, parse_params
from tests.test_config import raw_params

CHAMP = {"name": "control", "model": "champion", "share": 0.5}
POP = {"name": "pop", "model": "popularity", "share": 0.5}


def with_experiment(**experiment) -> dict:
    raw = raw_params()
    raw["experiment"] = {"name": "exp1", **experiment}
    return raw


def test_no_experiment_by_default_and_a_good_one_loads():
    raw = raw_params()
    assert parse_params(raw).experiment.active is False
    e = parse_params(with_experiment(arms=[CHAMP, POP])).experiment
    assert e.active and [a.name for a in e.arms] == ["control", "pop"] and e.unit == "user"


@pytest.mark.parametrize(
    "experiment, needle",
    [
        ({"arms": [CHAMP, {**POP, "share": 0.4}]}, "shares must sum to 1, they sum to 0.9"),
        ({"arms": [CHAMP]}, "at least two arms"),
        ({"arms": [{**CHAMP, "model": "lightgbm"}, POP]}, "one arm must serve the champion"),
        ({"arms": [CHAMP, {**POP, "name": "control"}]}, "arm names must differ"),
        ({"mode": "interleave", "arms": [CHAMP, POP, {**POP, "name": "p2"}]}, "merges two rankers"),
        ({"arms": [CHAMP, {**POP, "share": 0}]}, "arms.1.share"),
        ({"arms": [CHAMP, {**POP, "model": "../x"}]}, "arms.1.model"),
        ({"mode": "bandit", "arms": [CHAMP, POP]}, "experiment.mode"),
        ({"mode": "interleave", "shuffle_share": 0.1, "arms": [CHAMP, POP]}, "shuffle_share is for A/B"),
    ],
)
def test_a_bad_experiment_is_an_error_naming_what_is_wrong(experiment, needle):
    with pytest.raises(ParamsError, match="experiment") as info:
        parse_params(with_experiment(**experiment))
    assert needle in str(info.value)


def test_interleaving_ignores_the_shares():
    e = parse_params(with_experiment(mode="interleave", arms=[CHAMP, {**POP, "share": 0.1}])).experiment
    assert e.mode == "interleave"
