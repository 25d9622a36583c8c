"""`shoprank experiment` as a user and Airflow run it, and the promotion gate `shoprank select` applies."""

from __future__ import annotations

import json
import sys

import pytest
from typer.testing import CliRunner

from shoprank import selection
from shoprank.artifacts import write_checksum
from shoprank.cli import app
from shoprank.experiments.step import NoExperiment, run_experiment
from shoprank.selection import load_champion, run_select
from tests.conftest import ROOT
from tests.experiment_helpers import ab_records, experiment_params, write_log, write_params

runner = CliRunner()


def test_cli_prints_the_arms_the_split_check_and_the_decision(tmp_path):
    params = experiment_params(tmp_path)
    write_log(params, ab_records({"control": 0.10, "treatment": 0.05}, 2000, seed=21))
    result = runner.invoke(app, ["experiment", "--params", str(write_params(tmp_path, params))])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("control") and "champion" in line for line in lines)
    assert any(line.startswith("treatment") and "lightgbm" in line for line in lines)
    assert any(line.startswith("ctr") for line in lines) and "treatment - control" in result.output
    assert "sample ratio:" in result.output and ": ok" in result.output
    assert "decision for treatment: champion better after" in result.output
    report = json.loads((tmp_path / "metrics/experiment.json").read_text())
    assert report["decisions"] == {"treatment": "champion better"}


def test_no_experiment_configured_is_an_error_naming_the_key(tmp_path):
    params = experiment_params(tmp_path, name="")
    assert not params.experiment.active
    result = runner.invoke(app, ["experiment", "--params", str(write_params(tmp_path, params))])
    assert result.exit_code == 2
    assert "experiment.name" in result.output and "no experiment is configured" in result.output
    with pytest.raises(NoExperiment, match="experiment.name"):
        run_experiment(params)
    assert not (tmp_path / "metrics/experiment.json").exists()


def test_revenue_as_the_decision_metric_needs_a_catalogue(tmp_path):
    params = experiment_params(tmp_path, metric="revenue")
    write_log(params, ab_records({"control": 0.1, "treatment": 0.1}, 10, seed=1))
    result = runner.invoke(app, ["experiment", "--params", str(write_params(tmp_path, params))])
    assert result.exit_code == 2 and "no validated catalog" in result.output


def test_an_empty_log_is_reported_not_a_crash(tmp_path):
    params = experiment_params(tmp_path)
    result = runner.invoke(app, ["experiment", "--params", str(write_params(tmp_path, params))])
    assert result.exit_code == 0, result.output
    assert "no served record of experiment 'exp1'" in result.output
    assert "decision for treatment: continue" in result.output


# --- the promotion gate ------------------------------------------------------------------------


@pytest.fixture()
def select_setup(tmp_path, monkeypatch):
    """A trained lightgbm candidate that wins the evaluation, a validated batch, no champion yet."""
    monkeypatch.setattr("shoprank.models.scorers.load", lambda path: None)  # the artifact is a stand-in
    root = tmp_path
    (root / "models/candidates").mkdir(parents=True)
    artifact = root / "models/candidates/lightgbm.pt"
    artifact.write_bytes(b"a lightgbm checkpoint")
    write_checksum(artifact)
    (root / "data/validated/b1").mkdir(parents=True)
    (root / "data/validated/CURRENT").write_text("b1\n")
    (root / "metrics").mkdir()
    evaluation = root / "metrics/evaluate.json"
    evaluation.write_text(json.dumps({"candidates": {"lightgbm": {"auc": 0.8}, "popularity": {"auc": 0.6}}}))
    return root, evaluation


def experiment_report(root, decision: str, flagged: bool = False, model: str = "lightgbm") -> None:
    """metrics/experiment.json of exp1: the arm ``treatment`` serves ``model`` and got ``decision``."""
    arms = {"control": {"model": "champion"}, "treatment": {"model": model}}
    report = {
        "experiment": "exp1",
        "arms": arms,
        "srm": {"flagged": flagged},
        "decisions": {"treatment": decision},
    }
    (root / "metrics/experiment.json").write_text(json.dumps(report))


@pytest.mark.parametrize(
    ("decision", "flagged", "promoted", "needle"),
    [
        ("challenger better", False, True, "promoted lightgbm"),
        ("continue", False, False, "has not found lightgbm better (treatment: continue)"),
        ("champion better", False, False, "treatment: champion better"),
        ("challenger better", True, False, "sample-ratio mismatch"),
        (None, False, False, "no experiment report"),
    ],
)
def test_the_gate_promotes_only_what_the_experiment_found_better(
    select_setup, decision, flagged, promoted, needle
):
    root, evaluation = select_setup
    params = experiment_params(root, gate_promotion=True)
    if decision:
        experiment_report(root, decision, flagged)
    result = run_select(params, ROOT / "params.yaml", evaluation)
    assert result.promoted is promoted and needle in result.reason, result.reason
    assert (load_champion(root / "models") is not None) is promoted
    if not promoted:
        assert result.reason.startswith("experiment gate: ")


def test_without_the_gate_select_ignores_the_experiment_and_with_it_needs_an_arm_of_the_winner(
    select_setup,
):
    root, evaluation = select_setup
    experiment_report(root, "champion better")
    result = run_select(experiment_params(root), ROOT / "params.yaml", evaluation)
    assert result.promoted, result.reason
    (root / "models/champion.json").unlink()  # start again without a champion
    experiment_report(root, "challenger better", model="cf")  # another candidate won online
    refused = run_select(experiment_params(root, gate_promotion=True), ROOT / "params.yaml", evaluation)
    assert not refused.promoted and "no arm of experiment 'exp1' serves lightgbm" in refused.reason
    assert selection.load_champion(root / "models") is None

    other = experiment_params(root, gate_promotion=True).model_copy(deep=True)
    other.experiment.name = "exp2"  # the report is of another experiment
    experiment_report(root, "challenger better")
    stale = run_select(other, ROOT / "params.yaml", evaluation)
    assert not stale.promoted and "reports experiment 'exp1', not 'exp2'" in stale.reason


# --- the Airflow task --------------------------------------------------------------------------


def test_the_daily_task_skips_without_an_experiment_and_reports_with_one(tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowSkipException

    sys.path.insert(0, str(ROOT / "dags"))
    import shoprank_experiment  # type: ignore[import-not-found]

    task = shoprank_experiment.dag.get_task("experiment")
    assert "0 0 * * *" in repr(shoprank_experiment.dag.timetable)  # daily
    monkeypatch.setenv("SHOPRANK_HOME", str(tmp_path))
    none = experiment_params(tmp_path, name="")
    monkeypatch.setenv("SHOPRANK_PARAMS", str(write_params(tmp_path, none)))
    with pytest.raises(AirflowSkipException, match="no experiment is configured"):
        task.python_callable()

    params = experiment_params(tmp_path)
    write_log(params, ab_records({"control": 0.1, "treatment": 0.1}, 300, seed=22))
    monkeypatch.setenv("SHOPRANK_PARAMS", str(write_params(tmp_path, params)))
    summary = task.python_callable()
    assert summary["experiment"] == "exp1" and summary["requests"] == 300
    assert summary["decisions"] == {"treatment": "continue"} and summary["sample_ratio_mismatch"] is False
    assert (tmp_path / "metrics/experiment.json").is_file()
