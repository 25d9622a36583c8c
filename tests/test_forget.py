"""`shoprank forget USER`: the shopper is gone from every table and log, and later steps keep them out."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from shoprank.feedback import FeedbackLog
from shoprank.privacy import load_key, pseudonym, read_erased
from tests.conftest import tiny_raw_params


def _holds(paths: dict, who: str) -> list[str]:
    """Every file under the data folders that still holds the shopper's pseudonym."""
    found = []
    for key in ("raw", "validated", "quarantine", "features", "training", "feedback"):
        for path in Path(paths[key]).rglob("*"):
            if path.suffix == ".parquet":
                df = pd.read_parquet(path)
                if "user_id" in df and (df["user_id"].astype(str) == who).any():
                    found.append(str(path))
            elif path.suffix == ".jsonl" and who in path.read_text(errors="replace"):
                found.append(str(path))
    return found


def _online(params: Path, user: str) -> bool:
    """The online store has a value of the shopper's stats (Feast answers null for an unknown key)."""
    from shoprank.config import load_params
    from shoprank.features.store import open_store

    store = open_store(load_params(params).features)
    got = store.get_online_features(features=["user_stats:user_clicks"], entity_rows=[{"user_id": user}])
    return got.to_dict()["user_clicks"][0] is not None


@pytest.mark.slow
def test_forget_removes_a_shopper_everywhere_and_no_later_step_brings_them_back(tmp_path):
    raw = tiny_raw_params(tmp_path)
    paths = raw["paths"]
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))
    cli = CliRunner()

    def run(*args: str) -> str:
        out = cli.invoke(app, [*args, "--params", str(params)])
        assert out.exit_code == 0, out.output
        return out.output

    run("raw")
    key = load_key(paths["secrets"])
    who, other = pseudonym("user_000003", key), pseudonym("user_000004", key)
    items = pd.read_parquet(Path(paths["raw"]) / "catalog.parquet")["item_id"].tolist()[:4]
    now = datetime.now(UTC)
    log = FeedbackLog(paths["feedback"])
    for req, user in (("fb-mine", who), ("fb-other", other)):
        log.append([{"event": "served", "request_id": req, "user_id": user, "item_id": i,
                     "position": n + 1, "query": "tent"} for n, i in enumerate(items)], now=now)  # fmt: skip
        log.append([{"event": "click", "request_id": req, "item_id": items[0]}], now=now)  # no user on it
    run("ingest-feedback")
    run("validate")
    run("features")  # the feature tables and the online store hold the shopper, as a pipeline run leaves them
    run("materialize")
    # a training table keyed by shopper, as the training-set step writes
    Path(paths["training"]).mkdir(parents=True, exist_ok=True)
    impressions = pd.read_parquet(Path(paths["raw"]) / "impressions.parquet")
    impressions.to_parquet(Path(paths["training"]) / "training.parquet")
    assert len(_holds(paths, who)) >= 6 and _holds(paths, other)
    assert _online(params, who) and _online(params, other)

    out = run("forget", "user_000003")
    assert who in out and "user_000003" not in Path(paths["erasure"], "erased.txt").read_text()
    assert read_erased(paths["erasure"]) == {who}
    assert _holds(paths, who) == []
    assert _holds(paths, other)  # nobody else's rows went
    assert not _online(params, who) and _online(params, other)  # the online store forgot them too
    lines = [
        json.loads(x) for f in Path(paths["feedback"], "log").glob("*.jsonl") for x in f.read_text().split()
    ]
    assert {r["request_id"] for r in lines} == {"fb-other"}  # the click without a user went with its request

    run("raw")  # the next pipeline run: the simulator makes the shopper again, the erasure list drops them
    run("ingest-feedback")
    run("validate")
    assert _holds(paths, who) == []
    users = pd.read_parquet(Path(paths["raw"]) / "users.parquet")["user_id"]
    assert other in set(users) and who not in set(users)
