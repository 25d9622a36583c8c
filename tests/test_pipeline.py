"""The whole pipeline through the CLI on the tiny profile, as dvc.yaml and Airflow will run it."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from tests.conftest import ROOT, tiny_raw_params

pytestmark = [pytest.mark.slow, pytest.mark.integration]
runner = CliRunner()


@pytest.fixture(scope="module")
def params_file(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    raw = tiny_raw_params(tmp)
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path, raw


def step(name: str, path) -> str:
    result = runner.invoke(app, [name, "--params", str(path)])
    assert result.exit_code == 0, f"{name} failed:\n{result.output}"
    return result.output


def test_tiny_pipeline_end_to_end(params_file):
    path, raw = params_file
    for name in ("simulate", "validate", "features", "materialize", "training-set", "train", "evaluate"):
        step(name, path)
    report = json.loads((ROOT / raw["paths"]["metrics"] / "evaluate.json").read_text())
    assert set(report["candidates"]) == {"bert_ctr", "no_text", "lightgbm", "popularity"}
    for metrics in report["candidates"].values():
        for key in (
            "auc",
            "logloss",
            "gauc",
            "ndcg@10",
            "mrr",
            "ece",
            "auc_new_items",
            "auc_unseen_queries",
            "auc_over_oracle",
            "oracle_uplift_share",
            "snips_ctr",
        ):
            assert key in metrics
        assert 0.5 < metrics["auc"] <= metrics["bayes_auc"] + 0.05
    assert report["winner"] in report["candidates"]

    first = step("select", path)
    assert "promoted" in first
    champion = json.loads((ROOT / raw["paths"]["models"] / "champion.json").read_text())
    assert champion["candidate"] == report["winner"]
    assert {"data_version", "params_hash", "code_version"} <= set(champion["lineage"])
    again = step("select", path)  # the same winner does not beat itself by the margin
    assert "kept the champion" in again
