"""The Airflow DAGs run end to end with `airflow dags test` on the tiny profile: training, the
feedback loop, and a failed validation that stops the run and keeps the champion."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.conftest import ROOT, tiny_raw_params
from tests.test_dags import DAGS, stage_list

BIN = Path(sys.executable).parent


# --- end to end with `airflow dags test` ---------------------------------------------------------


def make_project(tmp: Path, min_new_impressions: int = 1000, params: dict | None = None) -> Path:
    """A private copy of the project (dvc.yaml, src, Feast repo, tiny params.yaml) initialised for DVC.

    ``params``: settings to replace, by section (``{"features": {"online_store": "redis"}}``).
    """
    from shoprank.features.store import copy_repo

    home = tmp / "project"
    home.mkdir()
    shutil.copy(ROOT / "dvc.yaml", home / "dvc.yaml")
    shutil.copytree(ROOT / "src", home / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    copy_repo(ROOT / "features", home)
    raw = tiny_raw_params()
    raw["feedback"]["min_new_impressions"] = min_new_impressions
    for section, values in (params or {}).items():
        raw[section].update(values)
    (home / "params.yaml").write_text(yaml.safe_dump(raw))
    (home / raw["paths"]["feedback"] / "log").mkdir(parents=True)
    # the raw stage's dep, even when it simulates
    (home / raw["import"]["dir"]).mkdir(parents=True, exist_ok=True)
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "--quiet"], cwd=home, check=True)
    return home


def airflow_env(tmp: Path, home: Path) -> dict[str, str]:
    af = tmp / "airflow"
    af.mkdir(exist_ok=True)
    return {
        **os.environ,
        "PATH": os.pathsep.join([str(BIN), os.environ.get("PATH", "")]),
        "AIRFLOW_HOME": str(af),
        "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{af / 'airflow.db'}",
        "SHOPRANK_HOME": str(home),
        "SHOPRANK_PARAMS": str(home / "params.yaml"),
        "SHOPRANK_NO_PROGRESS": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "BENTOML_HOME": str(tmp / "bentoml"),  # `shoprank package` writes the model store here
        "BENTOML_DO_NOT_TRACK": "True",
    }


def airflow(env: dict, *args: str, timeout: int = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def dags_test(env: dict, dag_id: str, date: str) -> tuple[subprocess.CompletedProcess, float]:
    start = time.perf_counter()
    result = airflow(env, "dags", "test", dag_id, date)
    return result, time.perf_counter() - start


def task_states(env: dict, dag_id: str) -> list[dict[str, str]]:
    db = Path(env["AIRFLOW_HOME"]) / "airflow.db"
    with sqlite3.connect(db) as con:
        rows = con.execute(
            "select run_id, task_id, state from task_instance where dag_id = ? order by run_id", (dag_id,)
        ).fetchall()
    return [{"run_id": r, "task_id": t, "state": s} for r, t, s in rows]


def asset_events(env: dict) -> int:
    with sqlite3.connect(Path(env["AIRFLOW_HOME"]) / "airflow.db") as con:
        return con.execute("select count(*) from asset_event").fetchone()[0]


@pytest.fixture(scope="module")
def airflow_project(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dags_e2e")
    home = make_project(tmp, min_new_impressions=5)
    env = airflow_env(tmp, home)
    migrated = airflow(env, "db", "migrate")
    assert migrated.returncode == 0, migrated.stdout[-3000:] + migrated.stderr[-3000:]
    return home, env


def _tail(result: subprocess.CompletedProcess) -> str:
    return (result.stdout + result.stderr)[-6000:]


@pytest.mark.slow
@pytest.mark.integration
def test_training_dag_runs_end_to_end_on_the_tiny_profile(airflow_project):
    home, env = airflow_project
    result, seconds = dags_test(env, "shoprank_training", "2025-06-01")
    print(f"airflow dags test shoprank_training (tiny): {seconds:.0f} s")
    states = {s["task_id"]: s["state"] for s in task_states(env, "shoprank_training")}
    assert result.returncode == 0 and set(states.values()) == {"success"}, f"{states}\n{_tail(result)}"
    assert set(states) == {*(t.replace("@", ".") for t in stage_list(home)), "record"}
    (path,) = (home / "metrics" / "runs").glob("*.json")
    record = json.loads(path.read_text())
    assert record["dvc"] == "committed" and record["data_batch"]
    assert (
        record["champion"]["version"]
        and record["champion"]["lineage"]["data_version"] == record["data_batch"]
    )
    lock = yaml.safe_load((home / "dvc.lock").read_text())["stages"]
    assert {"raw", "validate", "train@bert_ctr", "select", "understand"} <= set(lock)
    # `package` shipped the heads that the `understand` task fitted
    report = json.loads((home / "models" / "understanding" / "report.json").read_text())
    (manifest,) = (home.parent / "bentoml").rglob("manifest.json")
    assert report["trained"] and json.loads(manifest.read_text())["understanding"] == report["scores"]
    assert (manifest.parent / "understanding.pkl").is_file()
    assert record["dvc_lock"]["validate"] and record["dvc_lock"]["train@lightgbm"]
    status = subprocess.run(
        [str(BIN / "dvc"), "status", "--quiet"], cwd=home, env=env, capture_output=True, text=True
    )
    assert status.returncode == 0, status.stdout + status.stderr  # DVC agrees: everything is up to date


def feedback_fixture(home: Path, n_requests: int = 3, per_request: int = 4) -> int:
    """A small feedback log over the project's raw catalog and users; returns the served impressions."""
    from shoprank.feedback import FeedbackLog

    items = pd.read_parquet(home / "data/raw/catalog.parquet")["item_id"].tolist()
    users = pd.read_parquet(home / "data/raw/users.parquet")["user_id"].tolist()
    log = FeedbackLog(home / "data/feedback")
    now = datetime.now(UTC)
    for r in range(n_requests):
        shown = items[r * per_request : (r + 1) * per_request]
        log.append(
            [
                {"event": "served", "request_id": f"fb-{r}", "user_id": users[r], "query": "running shoes",
                 "item_id": item, "position": i + 1}
                for i, item in enumerate(shown)
            ],
            now=now,
        )  # fmt: skip
        log.append([{"event": "click", "request_id": f"fb-{r}", "item_id": shown[0]}], now=now)
    return n_requests * per_request


@pytest.mark.slow
@pytest.mark.integration
def test_feedback_dag_appends_a_log_once_and_schedules_training(airflow_project):
    home, env = airflow_project
    if not (home / "data/raw/catalog.parquet").is_file():  # this test alone: raw data first
        subprocess.run([str(BIN / "shoprank"), "raw"], cwd=home, env=env, check=True, capture_output=True)
    served = feedback_fixture(home)
    before = asset_events(env)
    first, _ = dags_test(env, "shoprank_feedback", "2025-06-02T01:00:00+00:00")
    assert first.returncode == 0, _tail(first)
    table = pd.read_parquet(home / "data/feedback/impressions.parquet")
    assert len(table) == served and table["clicked"].sum() == 3
    assert asset_events(env) == before + 1  # enough new data: shoprank_training is scheduled
    second, _ = dags_test(env, "shoprank_feedback", "2025-06-02T02:00:00+00:00")
    assert second.returncode == 0, _tail(second)
    assert len(pd.read_parquet(home / "data/feedback/impressions.parquet")) == served  # appended once
    assert asset_events(env) == before + 1  # nothing new: no second event
    runs = {}
    for s in task_states(env, "shoprank_feedback"):
        runs.setdefault(s["run_id"], {})[s["task_id"]] = s["state"]
    assert sorted(r["announce"] for r in runs.values()) == ["skipped", "success"]
    state = json.loads((home / "data/feedback/ingested.json").read_text())
    assert (state["impressions"], state["new_impressions"], state["pending_impressions"]) == (served, 0, 0)


@pytest.mark.slow
@pytest.mark.integration
def test_failed_validation_stops_the_run_and_keeps_the_champion(tmp_path):
    home = make_project(tmp_path)
    params = yaml.safe_load((home / "params.yaml").read_text())
    params["validate"]["min_ctr"] = 0.45  # the tiny marketplace's CTR is far below: the batch fails
    (home / "params.yaml").write_text(yaml.safe_dump(params))
    champion = home / "models" / "champion.json"
    champion.parent.mkdir(parents=True)
    champion.write_text('{"version": "v0007", "candidate": "bert_ctr"}\n')
    before = champion.read_bytes()
    env = airflow_env(tmp_path, home)
    assert airflow(env, "db", "migrate").returncode == 0
    result, _ = dags_test(env, "shoprank_training", "2025-06-03")
    states = {s["task_id"]: s["state"] for s in task_states(env, "shoprank_training")}
    assert states["validate"] == "failed", f"{states}\n{_tail(result)}"
    assert states["raw"] == states["ingest-feedback"] == "success"
    downstream = {t: s for t, s in states.items() if t not in ("raw", "ingest-feedback", "validate")}
    assert set(downstream.values()) == {"upstream_failed"}, downstream
    assert champion.read_bytes() == before  # the current champion keeps serving
    assert list((home / "data" / "quarantine").iterdir())  # the batch went to quarantine
    assert not (home / "data" / "validated" / "CURRENT").exists()
