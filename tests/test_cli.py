"""The CLI as a user runs it: commands, outputs, exit codes and messages."""

from __future__ import annotations

import json

import pandas as pd
from typer.testing import CliRunner

from shoprank.cli import app
from tests.conftest import ROOT

runner = CliRunner()
PARAMS = ["--params", str(ROOT / "params.yaml")]


def test_help_lists_one_command_per_step():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for step in (
        "simulate",
        "import",
        "validate",
        "features",
        "materialize",
        "training-set",
        "train",
        "evaluate",
        "select",
        "understand",
        "package",
    ):
        assert step in result.output


def test_simulate_tiny_writes_contract_tables_and_truth_and_prints_summary(tmp_path):
    out = tmp_path / "raw"
    result = runner.invoke(app, ["simulate", "--profile", "tiny", "--out", str(out), *PARAMS])
    assert result.exit_code == 0, result.output
    assert {p.name for p in out.glob("*.parquet")} == {
        "catalog.parquet",
        "users.parquet",
        "impressions.parquet",
    }
    assert (out / "truth" / "candidates.parquet").is_file()
    truth = pd.read_parquet(out / "truth" / "impressions.parquet")  # not cut down to the contract's columns
    assert list(truth.columns) == ["request_id", "item_id", "p_click"]
    summary = json.loads((out / "truth" / "summary.json").read_text())
    impressions = pd.read_parquet(out / "impressions.parquet")
    assert summary["rows"]["impressions"] == len(impressions)
    for needle in ("rows:", "overall CTR", "CTR by position", "new items", "intents", "Bayes-optimal AUC"):
        assert needle in result.output
    assert f"{impressions['clicked'].mean():.4f}" in result.output

    checked = runner.invoke(app, ["check", str(out)])
    assert checked.exit_code == 0 and "impressions: 30,000 rows conform" in checked.output


def test_check_reports_a_broken_table(tmp_path, tiny_batch):
    bad = pd.read_parquet(tiny_batch / "catalog.parquet")
    bad.loc[3, "price"] = -5.0
    bad.to_parquet(tmp_path / "catalog.parquet")
    result = runner.invoke(app, ["check", str(tmp_path)])
    assert result.exit_code == 1
    assert "price" in result.output and "3" in result.output


def test_unknown_profile_is_a_usage_error(tmp_path):
    result = runner.invoke(app, ["simulate", "--profile", "huge", "--out", str(tmp_path), *PARAMS])
    assert result.exit_code == 2
    assert "unknown profile 'huge'" in result.output
    assert not any(tmp_path.iterdir())


def test_bad_params_file_is_reported_not_a_traceback(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text((ROOT / "params.yaml").read_text().replace("seed: 42", "sed: 42"))
    result = runner.invoke(
        app, ["simulate", "--profile", "tiny", "--out", str(tmp_path / "o"), "--params", str(bad)]
    )
    assert result.exit_code == 2
    assert "simulate.sed" in result.output


def _params_in(tmp_path) -> list[str]:
    """params.yaml with every path under tmp_path, so CLI runs never touch ./data."""
    import yaml

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["paths"] = {k: str(tmp_path / v) for k, v in raw["paths"].items()}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    return ["--params", str(path)]


def test_validate_passes_a_good_batch_and_quarantines_a_bad_one(tmp_path, tiny_batch):
    params = _params_in(tmp_path)
    ok = runner.invoke(app, ["validate", "--batch", str(tiny_batch), *params])
    assert ok.exit_code == 0, ok.output
    assert "passed" in ok.output
    assert (tmp_path / "data/validated/CURRENT").is_file()

    bad_dir = tmp_path / "bad"
    bad_dir.mkdir()
    for name in ("catalog", "users"):
        (bad_dir / f"{name}.parquet").write_bytes((tiny_batch / f"{name}.parquet").read_bytes())
    imp = pd.read_parquet(tiny_batch / "impressions.parquet")
    imp.loc[5, "item_id"] = "item_999999"
    imp.to_parquet(bad_dir / "impressions.parquet")
    failed = runner.invoke(app, ["validate", "--batch", str(bad_dir), *params])
    assert failed.exit_code == 1
    assert "item_id" in failed.output
    assert any((tmp_path / "data/quarantine").iterdir())
