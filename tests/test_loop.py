"""The closed loop on the tiny profile: serve, record clicks and purchases, ingest, retrain,
evaluate against the champion on the same rows, select, package, serve the new bundle."""

from __future__ import annotations

import json
import subprocess

import pandas as pd
import pytest

from tests.conftest import step
from tests.serving_fixtures import VENV_BIN, package_tiny_champion, simulated_user

pytestmark = [pytest.mark.slow, pytest.mark.integration]
RETRAIN = ("ingest-feedback", "validate", "features", "materialize", "training-set", "train", "evaluate")


def test_the_services_own_feedback_trains_the_next_champion(tmp_path, monkeypatch):
    from shoprank.config import load_params
    from shoprank.ranking.ranker import Ranker

    env = package_tiny_champion(tmp_path)
    monkeypatch.chdir(tmp_path)
    params = load_params(env.params_file)
    users = pd.read_parquet(tmp_path / env.raw["paths"]["raw"] / "users.parquet")["user_id"]
    shoppers = [simulated_user(u, params.paths.secrets) for u in users[:6]]
    ranker = Ranker(env.bundle, params)
    served, clicked = [], 0
    for i, shopper in enumerate(shoppers):
        page = ranker.search(["running shoes", "wireless headphones", "coffee"][i % 3], shopper, k=8)
        served.append(page["request_id"])
        for r in page["results"][:2]:  # two clicks per page, and a purchase on the first
            ranker.record_feedback(page["request_id"], r["item_id"], "click", r["feedback_token"])
            clicked += 1
        top = page["results"][0]
        ranker.record_feedback(page["request_id"], top["item_id"], "purchase", top["feedback_token"])
    ranker.served.appender.flush()
    ranker.stop_refresh()

    for name in RETRAIN:
        step(name, env.params_file)
    ingested = json.loads((tmp_path / env.raw["paths"]["feedback"] / "ingested.json").read_text())
    assert ingested["impressions"] == 6 * 8 and ingested["clicks"] == clicked and ingested["quarantined"] == 0
    trained = pd.read_parquet(
        tmp_path / env.raw["paths"]["training"] / "training_set.parquet",
        columns=["request_id", "clicked", "purchased"],
    )
    mine = trained[trained["request_id"].isin(served)]
    assert len(mine) == 6 * 8 and mine["clicked"].sum() == clicked and mine["purchased"].sum() == 6

    # the feedback is the newest data: it sits in the test split, where the simulator has no truth
    report = json.loads((tmp_path / env.raw["paths"]["metrics"] / "evaluate.json").read_text())
    winner = report["candidates"][report["winner"]]
    assert "oracle_uplift_share" in winner and "auc_over_oracle" in winner  # from the simulated rows
    assert report["champion"]["version"] == "v0001" and "auc" in report["champion"]["metrics"]

    decided = step("select", env.params_file)
    assert "on the same test split" in decided or "promoted" in decided
    done = subprocess.run(  # the private model store: BENTOML_HOME is the environment's
        [str(VENV_BIN / "shoprank"), "package", "--params", str(env.params_file)],
        env=env.env(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0 and "packaged" in done.stdout, done.stderr[-3000:]
    record = json.loads((tmp_path / env.raw["paths"]["models"] / "package.json").read_text())
    bundle = env.bentoml_home / "models" / record["tag"].replace(":", "/")
    again = Ranker(bundle, params)
    page = again.search("running shoes", shoppers[0], k=5)
    assert len(page["results"]) == 5 and page["model_version"] == record["version"]
    again.stop_refresh()
