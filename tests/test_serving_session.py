"""The shopper's day so far in serving: counted from what the service shows and what is clicked."""

from __future__ import annotations

import numpy as np
import pytest

from shoprank.ranking.session import DAY_S, DaySoFar


def test_the_day_so_far_counts_shown_and_clicked_and_starts_again_each_day():
    now = [10 * DAY_S + 3600.0]
    day = DaySoFar(prior=0.1, prior_strength=20.0, max_shoppers=2, clock=lambda: now[0])
    assert day.values("u") == {"user_impressions_today": 0, "user_ctr_today": pytest.approx(0.1)}
    day.shown("u", 10)
    day.clicked("u")
    assert day.values("u") == {"user_impressions_today": 10, "user_ctr_today": pytest.approx(3 / 30)}
    day.shown("u", 10)
    assert day.values("u")["user_ctr_today"] == pytest.approx(3 / 40)
    day.shown(None, 5)  # anonymous requests count for nobody
    assert day.values(None)["user_impressions_today"] == 0
    now[0] += DAY_S  # midnight UTC passed: a new day
    assert day.values("u")["user_impressions_today"] == 0
    day.shown("u", 1)
    day.shown("v", 1)
    day.shown("w", 1)  # the least recently seen shopper is forgotten
    assert day.values("u")["user_impressions_today"] == 0 and day.values("w")["user_impressions_today"] == 1


@pytest.fixture(scope="module")
def ranker(serving_env):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    params = load_params(serving_env.params_file)
    settings = params.serve.model_copy(update={"feature_ttl_s": 600.0})
    ranker = Ranker(serving_env.bundle, params, settings=settings)
    yield ranker
    ranker.stop_refresh()


def test_a_session_in_progress_reaches_the_models_inputs(ranker, serving_env):
    user = str(ranker.features.users.index[0])  # a pseudonym, as score takes
    items = [str(i) for i in ranker.catalog.item_ids[:12]]
    first = ranker.rank("", serving_env.user_id(user), items, shown=12)  # the shopper's own id
    s = ranker.score(ranker.rows_of(items), "", user, "r_probe", {})
    frame = ranker.frame_of(s).df
    assert (frame["user_impressions_today"] == 12).all()  # what the first page showed
    top = first["results"][0]
    ranker.record_feedback(first["request_id"], top["item_id"], "click", top["feedback_token"])
    s = ranker.score(ranker.rows_of(items), "", user, "r_probe", {})
    after = ranker.frame_of(s).df
    assert (after["user_ctr_today"] > frame["user_ctr_today"]).all()  # the click moved it
    if ranker.scoring.fast is not None:  # the fast path reads the same values as the frame
        assert ranker.check_fast_path(user)
    other = ranker.score(ranker.rows_of(items), "", None, "r_probe", {})
    assert np.all(ranker.frame_of(other).df["user_impressions_today"] == 0)
