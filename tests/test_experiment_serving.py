"""An online experiment served by the in-process Ranker on the packaged tiny champion.

The arms live in a copy of the bundle (links to its files, plus ``arms/``): a twin of the
champion, a corrupted file; the ``legacy`` arm needs none. Each ranker logs to its own
feedback folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from shoprank.config_experiment import Experiment
from shoprank.feedback import FeedbackLog

pytestmark = [pytest.mark.slow, pytest.mark.integration]
CONTROL = {"name": "control", "model": "champion", "share": 0.5}


@pytest.fixture(scope="module")
def bundle(serving_env, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("experiment") / "bundle"
    out.mkdir()
    for entry in serving_env.bundle.iterdir():
        (out / entry.name).symlink_to(entry)
    (out / "arms").mkdir()
    models = Path(serving_env.raw["paths"]["models"])
    shutil.copy2(models / "candidates" / "bert_ctr.pt", out / "arms" / "twin.pt")
    (out / "arms" / "broken.pt").write_bytes(b"not a model at all")
    return out


def ranker_for(serving_env, bundle: Path, tmp_path: Path, **experiment):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    params = load_params(serving_env.params_file)
    paths = params.paths.model_copy(
        update={"feedback": tmp_path / "feedback", "catalog_updates": tmp_path / "updates"}
    )
    params = params.model_copy(update={"experiment": Experiment(name="exp1", **experiment), "paths": paths})
    settings = params.serve.model_copy(update={"feature_ttl_s": 600.0, "reload_s": 0.0})
    return Ranker(bundle, params, settings=settings)


def served_log(ranker) -> pd.DataFrame:
    ranker.served.appender.flush(5.0)
    return FeedbackLog(ranker.served.feedback.root).read()


def candidates(ranker, n: int = 12) -> list[str]:
    return ranker.item_ids[:n].tolist()


def test_ab_gives_each_shopper_one_arm_and_logs_it(serving_env, bundle, tmp_path):
    arms = [CONTROL, {"name": "old", "model": "legacy", "share": 0.5}]
    ranker = ranker_for(serving_env, bundle, tmp_path, arms=arms)
    try:
        items = candidates(ranker)
        seen: dict[str, set[str]] = {}
        for i in range(40):
            user = f"user_{i % 10}"
            body = ranker.rank("warm jacket", user, items, shown=5)
            arm = body["experiment"]["arm"]
            seen.setdefault(user, set()).add(arm)
            if arm == "old":  # the legacy control keeps the caller's order
                assert body["order"] == items
            else:
                scores = [r["score"] for r in body["results"]]
                assert scores == sorted(scores, reverse=True)
        assert all(len(a) == 1 for a in seen.values())  # one arm per shopper, every time
        assert {a for s in seen.values() for a in s} == {"control", "old"}
        log = served_log(ranker)
        assert len(log) == 40 * 5 and (log["experiment"] == "exp1").all()
        assert set(log["arm"]) == {"control", "old"}
        # over the arm draw: 1 where both arms' pages have the item there, else the arm's 0.5;
        # on the champion's pages, legacy's has the item there when the caller put it there
        champ = log[log["arm"] == "control"]
        agree = champ["item_id"].to_numpy() == np.asarray(items)[champ["position"].to_numpy() - 1]
        np.testing.assert_allclose(champ["propensity"], np.where(agree, 1.0, 0.5))
        assert set(log["propensity"]) <= {0.5, 1.0} and (log["propensity"] == 0.5).any()
        by_request = log.groupby("request_id")["arm"].nunique()
        assert (by_request == 1).all()
        assert ranker.ready()["experiment"] == {
            "name": "exp1",
            "mode": "ab",
            "running": True,
            "arms": ["control", "old"],
            "dropped": {},
        }
        # a click on an experiment's item carries its arm
        body = ranker.rank("warm jacket", "user_1", items, shown=5)
        first = body["results"][0]
        ranker.record_feedback(body["request_id"], first["item_id"], "click", first["feedback_token"])
        log = served_log(ranker)
        click = log[log["event"] == "click"].iloc[0]
        assert (click["experiment"], click["arm"]) == ("exp1", body["experiment"]["arm"])
    finally:
        ranker.stop_refresh()


def test_shuffled_requests_give_every_item_a_probability_at_every_position(serving_env, bundle, tmp_path):
    arms = [CONTROL, {"name": "old", "model": "legacy", "share": 0.5}]
    ranker = ranker_for(serving_env, bundle, tmp_path, arms=arms, shuffle_share=0.5)
    try:
        items = candidates(ranker, 10)
        orders = [ranker.rank("warm jacket", f"user_{i}", items)["order"] for i in range(30)]
        log = served_log(ranker)
        eps, n = 0.5, len(items)
        # (1 - eps) * (the arms' shares that place it there: 0, 0.5 or 1) + eps / n
        allowed = {round((1 - eps) * a + eps / n, 9) for a in (0.0, 0.5, 1.0)}
        assert set(log["propensity"].round(9)) <= allowed
        assert (log["propensity"].round(9) == round(eps / n, 9)).any()  # a shuffled item no arm puts there
        champion_orders = {tuple(o) for o in orders} - {tuple(items)}
        assert len(champion_orders) > 2  # shuffled pages differ from request to request
    finally:
        ranker.stop_refresh()


def test_a_model_arm_rescores_the_same_inputs(serving_env, bundle, tmp_path):
    arms = [{**CONTROL, "share": 0.01}, {"name": "twin", "model": "bert_ctr", "share": 0.99}]
    ranker = ranker_for(serving_env, bundle, tmp_path, arms=arms)
    try:
        items = candidates(ranker, 20)
        body = ranker.rank("waterproof tent", "user_3", items)
        assert body["experiment"]["arm"] == "twin" and body["degraded"] is False
        s = ranker.score(
            ranker.rows_of(items), "waterproof tent", ranker.shopper("user_3"), "r_" + "1" * 32, {}
        )
        twin = ranker.experiment.arm_scores("twin", s)
        np.testing.assert_allclose(twin, s.scores, atol=1e-5)  # the champion's own model, loaded again
        assert ranker.experiment.scorings["twin"] is not ranker.scoring
    finally:
        ranker.stop_refresh()


def test_interleaving_merges_both_rankings_and_logs_each_slots_team(serving_env, bundle, tmp_path):
    arms = [CONTROL, {"name": "old", "model": "legacy", "share": 0.5}]
    ranker = ranker_for(serving_env, bundle, tmp_path, arms=arms, mode="interleave")
    try:
        items = candidates(ranker, 16)
        body = ranker.rank("warm jacket", "user_2", items, shown=16)
        assert body["experiment"] == {"name": "exp1", "arm": None}
        order = body["order"]
        champion_first = max(body["results"], key=lambda r: r["score"])["item_id"]
        assert set(order[:2]) == {champion_first, items[0]} or order[0] == champion_first == items[0]
        log = served_log(ranker)
        assert set(log["arm"]) == {"control", "old"} and (log["propensity"] == 0.5).all()
        teams = log.sort_values("position")["arm"].tolist()
        assert abs(teams.count("control") - teams.count("old")) <= 1  # team draft keeps the teams even
        page = ranker.search("warm jacket", "user_2", k=10)
        assert len(page["results"]) == 10
        log = served_log(ranker)
        searched = log[log["request_id"] == page["request_id"]].sort_values("position")
        explored = [r["exploration"] for r in page["results"]]
        assert searched["arm"].isna().tolist() == explored  # exploration slots belong to no team
        assert ((searched["propensity"] > 0) & (searched["propensity"] <= 1)).all()
    finally:
        ranker.stop_refresh()


@pytest.mark.parametrize(
    "model, needle", [("broken", "its model does not load (broken.pt)"), ("missing", "not in the bundle")]
)
def test_an_arm_that_cannot_serve_is_dropped_and_the_champion_serves_its_traffic(
    serving_env, bundle, tmp_path, model, needle
):
    arms = [CONTROL, {"name": model, "model": "lightgbm", "share": 0.5}]
    ranker = ranker_for(serving_env, bundle, tmp_path, arms=arms)
    try:
        state = ranker.ready()["experiment"]
        assert state["running"] is True and state["arms"] == ["control"]
        assert list(state["dropped"]) == [model] and needle in state["dropped"][model]
        assert "Error" not in state["dropped"][model]  # readiness tells why in words; the log has the error
        items = candidates(ranker)
        answers = [ranker.rank("tent", f"user_{i}", items) for i in range(20)]
        assert {a["experiment"]["arm"] for a in answers} == {"control"}
        assert all(a["degraded"] is False for a in answers)
    finally:
        ranker.stop_refresh()


def test_an_item_listed_while_the_experiment_runs_is_ranked_by_every_arm(serving_env, bundle, tmp_path):
    from shoprank.data.updates import submit
    from tests.test_catalog_updates import catalog_row, write_jsonl

    arms = [{**CONTROL, "share": 0.01}, {"name": "twin", "model": "bert_ctr", "share": 0.99}]
    updates = tmp_path / "updates"
    ranker = ranker_for(serving_env, bundle, tmp_path, arms=arms)
    try:
        source = write_jsonl(tmp_path / "new.jsonl", [catalog_row("new_arm_item", "Zorblax trail tent")])
        assert not submit(source, updates)["rejected"]
        ranker.refresh_catalog()
        items = [*candidates(ranker, 8), "new_arm_item"]
        body = ranker.rank("trail tent", "user_3", items)
        assert body["experiment"]["arm"] == "twin" and body["degraded"] is False
        s = ranker.score(ranker.rows_of(items), "trail tent", ranker.shopper("user_3"), "r_" + "3" * 32, {})
        twin, failed = ranker.experiment.scorings["twin"].rescore(s)  # the arm's own model, no fallback
        assert not failed
        np.testing.assert_allclose(twin, s.scores, atol=1e-5)
    finally:
        ranker.stop_refresh()
