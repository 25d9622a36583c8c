"""The experiment report from a feedback log: counts, rates, intervals, the split check, set-aside records."""

from __future__ import annotations

import json
from datetime import timedelta

import pandas as pd
import pytest

from shoprank.experiments.step import run_experiment
from tests.experiment_helpers import START, ab_records, experiment_params, interleave_records, write_log

PRICES = {"a": 12.5, "b": 4.0, "c": 1.0, "d": 2.0}


def rec(event: str, request: str, item: str, t: int = 0, **fields) -> dict:
    ts = (START + timedelta(seconds=t)).isoformat()
    return {"event": event, "request_id": request, "item_id": item, "ts": ts, **fields}


def served(request: str, item: str, user: str | None, arm: str | None, exp: str | None = "exp1", t: int = 0):
    return rec("served", request, item, t, user_id=user, experiment=exp, arm=arm, propensity=1.0)


def with_catalog(params) -> None:
    """A validated batch whose catalog prices items a-d."""
    batch = params.paths.validated / "b1"
    batch.mkdir(parents=True)
    pd.DataFrame({"item_id": list(PRICES), "price": list(PRICES.values())}).to_parquet(
        batch / "catalog.parquet"
    )
    (params.paths.validated / "CURRENT").write_text("b1\n")


HANDMADE = [
    # r1, r3: control (user u1; r3's second slot is an exploration slot, no arm); r2: treatment
    *(served("r1", i, "u1", "control", t=1) for i in "abc"),
    rec("click", "r1", "a", 2),
    rec("purchase", "r1", "a", 3),
    *(served("r2", i, "u2", "treatment", t=4) for i in "ab"),
    rec("click", "r2", "a", 5),
    rec("click", "r2", "b", 6),
    rec("click", "r2", "b", 7),  # the same click again: one clicked impression
    served("r3", "a", "u1", "control", t=8),
    served("r3", "b", "u1", None, t=8),
    rec("click", "r3", "b", 9),
    # another experiment, and a request outside experiments: not read
    served("r4", "a", "u4", "control", exp="exp0", t=10),
    rec("click", "r4", "a", 11),
    served("r6", "a", "u6", None, exp=None, t=12),
    rec("click", "r6", "a", 13),
    # an arm that is not configured: the request is set aside with its click
    *(served("r5", i, "u5", "ghost", t=14) for i in "ab"),
    rec("click", "r5", "a", 15),
    # a click of no served record; one naming another experiment is left to it
    rec("click", "r9", "a", 16),
    rec("click", "r7", "a", 17, experiment="exp0"),
]


def test_handmade_log_gives_exact_counts_rates_and_revenue(tmp_path):
    params = experiment_params(tmp_path)
    with_catalog(params)
    write_log(params, HANDMADE)
    report = run_experiment(params)
    control, treatment = report["arms"]["control"], report["arms"]["treatment"]
    counts = ("units", "requests", "impressions", "clicks", "purchases", "revenue")
    assert [control[k] for k in counts] == [1, 2, 5, 2, 1, 12.5]
    assert control["ctr"]["value"] == pytest.approx(2 / 5)
    assert control["clicks_per_request"]["value"] == pytest.approx(1.0)
    assert control["revenue_per_request"]["value"] == pytest.approx(6.25)
    assert (treatment["requests"], treatment["impressions"], treatment["clicks"]) == (1, 2, 2)
    assert report["differences"]["treatment"]["ctr"]["value"] == pytest.approx(1.0 - 0.4)
    records = report["records"]
    assert (records["served"], records["clicks"], records["purchases"]) == (9, 6, 1)  # of exp1's served
    assert records["set_aside_unknown_arm"] == 3 and records["set_aside_unmatched"] == 1
    assert report["requests"] == 3 and report["decisions"] == {"treatment": "continue"}  # far too little data

    aside = tmp_path / "data/quarantine/experiment"
    unknown = [json.loads(line) for line in (aside / "exp1-unknown-arm.jsonl").read_text().splitlines()]
    assert sorted((r["event"], r["item_id"]) for r in unknown) == [
        ("click", "a"),
        ("served", "a"),
        ("served", "b"),
    ]
    assert all(r["request_id"] == "r5" and "arm" in r["reason"] for r in unknown)
    (orphan,) = [json.loads(line) for line in (aside / "exp1-unmatched.jsonl").read_text().splitlines()]
    assert orphan["request_id"] == "r9" and orphan["event"] == "click"
    assert report["set_aside"]["unknown-arm"]["records"] == 3

    # the arm is configured after all: the request counts, and the stale quarantine file goes
    ghost = {"name": "ghost", "model": "popularity", "share": 0.2}
    arms = [{**a.model_dump(), "share": 0.4} for a in params.experiment.arms] + [ghost]
    again = run_experiment(experiment_params(tmp_path, arms=arms))
    assert again["arms"]["ghost"]["requests"] == 1 and again["records"]["set_aside_unknown_arm"] == 0
    assert not (aside / "exp1-unknown-arm.jsonl").exists()


def test_an_ab_request_served_by_two_arms_is_set_aside(tmp_path):
    params = experiment_params(tmp_path)
    write_log(params, [served("r1", "a", "u1", "control"), served("r1", "b", "u1", "treatment"),
                       served("r2", "a", "u2", "control")])  # fmt: skip
    report = run_experiment(params)
    assert report["records"]["set_aside_several_arms"] == 2 and report["requests"] == 1
    assert report["catalog"] is None and report["arms"]["control"]["revenue"] is None  # no catalogue


def test_ctr_and_its_interval_match_the_known_click_rates(tmp_path):
    params = experiment_params(tmp_path)
    write_log(params, ab_records({"control": 0.10, "treatment": 0.06}, 3000, seed=3))
    report = run_experiment(params)
    for arm, rate in (("control", 0.10), ("treatment", 0.06)):
        ctr = report["arms"][arm]["ctr"]
        assert ctr["value"] == pytest.approx(rate, abs=0.01)
        assert ctr["low"] < rate < ctr["high"] and ctr["high"] - ctr["low"] < 0.03
    diff = report["differences"]["treatment"]["ctr"]
    assert diff["low"] < -0.04 < diff["high"] and diff["high"] < 0  # a real drop: the interval excludes 0
    assert sum(report["arms"][a]["requests"] for a in ("control", "treatment")) == 3000
    assert sum(report["arms"][a]["impressions"] for a in ("control", "treatment")) == 15000


@pytest.mark.parametrize(("shares", "flagged"), [({"control": 0.6, "treatment": 0.4}, True), (None, False)])
def test_sample_ratio_mismatch_flags_a_60_40_split_configured_as_50_50(tmp_path, shares, flagged):
    params = experiment_params(tmp_path)
    write_log(params, ab_records({"control": 0.1, "treatment": 0.1}, 4000, seed=5, shares=shares, items=1))
    srm = run_experiment(params)["srm"]
    assert sum(srm["observed"].values()) == 4000 and srm["expected"] == {"control": 2000, "treatment": 2000}
    assert srm["flagged"] is flagged
    assert (srm["p_value"] < 1e-6) if flagged else (srm["p_value"] > 0.001)


def test_units_are_users_so_returning_users_count_once(tmp_path):
    params = experiment_params(tmp_path)
    write_log(params, ab_records({"control": 0.1, "treatment": 0.1}, 600, seed=2, users=50, items=1))
    report = run_experiment(params)
    assert sum(report["arms"][a]["units"] for a in ("control", "treatment")) <= 50
    assert report["srm"]["units_in_several_arms"] == 0
    by_request = run_experiment(experiment_params(tmp_path, unit="request"))
    assert sum(by_request["arms"][a]["units"] for a in ("control", "treatment")) == 600


def test_interleaving_credits_each_click_to_the_team_that_placed_the_item(tmp_path):
    params = experiment_params(tmp_path, mode="interleave")
    t = {"a": "control", "b": "treatment", "c": "treatment", "d": None}  # d: an exploration slot
    page = [served(r, i, f"u{r}", t[i]) for r in ("r1", "r2", "r3", "r4", "r5") for i in "abcd"]
    clicks = [("r1", "b"), ("r1", "c"), ("r2", "a"), ("r2", "b"), ("r3", "a"), ("r5", "d")]
    write_log(params, page + [rec("click", r, i) for r, i in clicks])
    report = run_experiment(params)
    i = report["interleaving"]
    assert report["arms"]["treatment"]["wins"] == 1 and report["arms"]["control"]["wins"] == 1  # r1, r3
    assert i["ties"] == 1 and i["requests_with_credited_clicks"] == 3  # r2; r5's click credits no team
    assert i["requests_with_clicks"] == 4 and i["uncredited_clicks"] == 1
    assert report["arms"]["treatment"]["clicks"] == 3 and report["arms"]["control"]["clicks"] == 2
    assert report["arms"]["control"]["placed"] == 5 and report["arms"]["treatment"]["placed"] == 10
    assert i["preference"]["value"] == pytest.approx(0.0)
    assert report["srm"] is None


def test_interleaving_preference_and_sequential_test_find_the_better_team(tmp_path):
    params = experiment_params(tmp_path, mode="interleave", mixture_variance=0.01)
    write_log(params, interleave_records({"control": 0.12, "treatment": 0.06}, 2000, seed=4))
    report = run_experiment(params)
    pref = report["interleaving"]["preference"]
    assert pref["high"] < 0  # the challenger loses: its clicks are half the champion's
    test = report["sequential"]["treatment"]
    assert test["decision"] == "champion better" and test["decided_at"]["samples"] >= 100
    assert test["decided_at"]["requests"] < 2000


def test_a_log_without_the_experiment_is_a_report_that_says_so(tmp_path):
    params = experiment_params(tmp_path)
    write_log(params, ab_records({"control": 0.1, "treatment": 0.1}, 20, seed=1, experiment="other"))
    report = run_experiment(params)
    assert "no served record of experiment 'exp1'" in report["note"]
    assert report["requests"] == 0 and report["decisions"] == {"treatment": "continue"}
    assert report["arms"]["control"]["ctr"]["value"] is None
    empty = experiment_params(tmp_path / "fresh")  # no log folder at all
    assert run_experiment(empty)["note"] is not None
