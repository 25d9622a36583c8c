"""A log of recommendation feeds only, without propensities or truth, through every pipeline step."""

from __future__ import annotations

import json
import shutil

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from shoprank.cli import app
from tests.conftest import tiny_raw_params

pytestmark = [pytest.mark.slow]
runner = CliRunner()


def _strict(text: str) -> dict:
    def refuse(token: str) -> None:
        raise ValueError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_feeds_without_propensities_or_truth_run_from_validate_to_evaluate(tmp_path):
    raw = tiny_raw_params(tmp_path)
    raw["train"]["candidates"] = {
        "bert_ctr": {"reads": "train", "also": "features.history_length"},
        "lightgbm": {"reads": "lightgbm", "also": "train.seed"},
        "popularity": {"reads": "train.val_share", "also": "train.test_share"},
    }
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(raw))

    def step(*args: str) -> str:
        result = runner.invoke(app, [*args, "--params", str(params)])
        assert result.exit_code == 0, f"{args} failed:\n{result.output}\n{result.exception!r}"
        return result.output

    step("raw")
    out = tmp_path / "data" / "raw"
    shutil.rmtree(out / "truth")  # a shop's log: no simulator truth
    imp = pd.read_parquet(out / "impressions.parquet")
    imp.assign(query="").drop(columns=["propensity"]).to_parquet(out / "impressions.parquet")
    for name in ("validate", "features", "materialize", "training-set", "train", "evaluate"):
        output = step(name)
    assert "snips_ctr: not computed, the log has no logging propensities" in output
    report = _strict((tmp_path / "metrics" / "evaluate.json").read_text())
    assert set(report["candidates"]) == {"bert_ctr", "lightgbm", "popularity"}
    for metrics in report["candidates"].values():
        assert (
            0.5 < metrics["auc"] < 1
            and "auc_cold_items" in metrics
            or "auc_cold_items" in report["not_computed"]
        )
        assert not {"snips_ctr", "auc_over_oracle", "bayes_auc", "auc_unseen_queries"} & set(metrics)
    assert set(report["not_computed"]) >= {"snips_ctr", "auc_over_oracle", "bayes_auc", "auc_unseen_queries"}
    assert "ground truth" in report["not_computed"]["auc_over_oracle"]
    training = pd.read_parquet(tmp_path / "data" / "training" / "training_set.parquet", columns=["query"])
    assert (training["query"] == "").all()
