"""The Airflow DAGs: they parse fast and cleanly, shoprank_training is dvc.yaml's stages one to one
(tasks and edges, as DVC renders them), and both DAGs run end to end with `airflow dags test` on
the tiny profile."""

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

DAGS = ROOT / "dags"
BIN = Path(sys.executable).parent
PARSE_BUDGET_S = 5.0  # the whole dags/ folder, once Airflow is imported, DVC asked afresh
FILE_BUDGET_S = 1.0  # one DAG file while dvc.yaml and params.yaml are unchanged (what Airflow re-parses)


def parse(dags: Path = DAGS):
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    from airflow.dag_processing.dagbag import DagBag

    start = time.perf_counter()
    bag = DagBag(str(dags))
    bag.parse_seconds = time.perf_counter() - start  # type: ignore[attr-defined]  # read by the tests
    return bag


@pytest.fixture(scope="module")
def dagbag(tmp_path_factory):
    home = tmp_path_factory.mktemp("airflow_home")
    os.environ.setdefault("AIRFLOW_HOME", str(home))  # never the user's ~/airflow
    return parse()


def test_dags_import_without_errors_within_the_parse_budget(dagbag):
    assert dagbag.import_errors == {}
    assert set(dagbag.dags) == {"shoprank_training", "shoprank_feedback"}
    assert dagbag.parse_seconds < PARSE_BUDGET_S, f"dags/ took {dagbag.parse_seconds:.2f} s to parse"
    again = parse()
    per_file = {s.file: s.duration.total_seconds() for s in again.dagbag_stats}
    assert max(per_file.values()) < FILE_BUDGET_S, per_file


def test_dags_are_documented_and_safe_to_schedule(dagbag):
    for dag in dagbag.dags.values():
        assert dag.doc_md and len(dag.doc_md) > 200, dag.dag_id
        assert dag.max_active_runs == 1 and not dag.catchup
        for t in dag.tasks:
            assert t.doc_md or t.doc, f"{dag.dag_id}.{t.task_id} has no docs"
    training = dagbag.dags["shoprank_training"]
    for t in training.tasks:
        if t.task_id != "validate":
            assert t.retries >= 1 and t.retry_exponential_backoff, t.task_id
    assert training.get_task("validate").retries == 0  # bad data does not improve on retry
    # scheduled daily and on the feedback asset that shoprank_feedback emits
    feedback = dagbag.dags["shoprank_feedback"]
    (announce,) = [t for t in feedback.tasks if t.outlets]
    assert "shoprank_feedback_impressions" in repr(training.timetable)
    assert announce.outlets[0].name == "shoprank_feedback_impressions"
    assert "0 0 * * *" in repr(training.timetable)


# --- the DAG against dvc.yaml --------------------------------------------------------------------


def dvc_graph(root: Path = ROOT) -> tuple[set[str], set[tuple[str, str]]]:
    """dvc.yaml's stages and edges (A -> B: B reads what A writes), straight from DVC's own graph."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        return {s.name for s in graph.nodes}, {(b.name, a.name) for a, b in graph.edges}


def stage_list(root: Path = ROOT) -> list[str]:
    """`dvc stage list --name-only`: the stage names as DVC's command line gives them."""
    out = subprocess.run(
        [str(BIN / "dvc"), "stage", "list", "--name-only"],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.split()


def ancestors(edges: set[tuple[str, str]], node: str) -> set[str]:
    up, todo = set(), [node]
    while todo:
        n = todo.pop()
        for a, b in edges:
            if b == n and a not in up:
                up.add(a)
                todo.append(a)
    return up


def training_stages(dag) -> set[str]:
    from shoprank_training import BOOKKEEPING  # type: ignore[import-not-found]
    from shoprank_wiring import stage_name

    return {stage_name(t) for t in dag.task_dict if t not in BOOKKEEPING}


def test_training_tasks_are_the_dvc_stages_one_to_one(dagbag):
    sys.path.insert(0, str(DAGS))
    from typer.main import get_command

    from shoprank.cli import app

    stages = set(stage_list())
    dag = dagbag.dags["shoprank_training"]
    tasks = training_stages(dag)
    assert tasks == stages, (
        f"DAG tasks without a dvc.yaml stage: {sorted(tasks - stages)}; "
        f"dvc.yaml stages without a task: {sorted(stages - tasks)}"
    )
    # one name per step: the stage, its CLI command and its task (a foreach item: in the step's group)
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    assert {s.split("@")[0] for s in stages} <= commands
    candidates = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["candidates"]
    assert {t for t in dag.task_dict if t.startswith("train.")} == {f"train.{c}" for c in candidates}
    assert {"understand", "package"} <= set(dag.task_dict)
    assert set(dag.get_task("record").upstream_task_ids) == {"package"}  # after the last stage


def test_training_edges_follow_the_dvc_graph(dagbag):
    """Every dvc.yaml dependency is an upstream path in the DAG, and every DAG edge is one in dvc.yaml."""
    from shoprank_wiring import stage_name

    stages, dvc_edges = dvc_graph()
    dag = dagbag.dags["shoprank_training"]
    dag_edges = {
        (stage_name(t.task_id), stage_name(d))
        for t in dag.tasks
        for d in t.downstream_task_ids
        if stage_name(t.task_id) in stages and stage_name(d) in stages
    }
    for a, b in dvc_edges:
        assert a in ancestors(dag_edges, b), (
            f"dvc.yaml: {b} reads what {a} writes, but the DAG runs {b} first"
        )
    for a, b in dag_edges:
        assert a in ancestors(dvc_edges, b), f"DAG edge {a} -> {b} has no dependency in dvc.yaml"
    candidates = [s for s in stages if s.startswith("train@")]
    for a in candidates:  # trained in parallel
        assert not any(b in ancestors(dag_edges, a) for b in candidates)
    assert "understand" in ancestors(dag_edges, "package")
    assert not {"understand", "package"} & ancestors(dag_edges, "understand")  # it needs only features


def test_tasks_run_the_command_dvc_renders(monkeypatch):
    """A task asks DVC for its stage's command when it runs: the candidate comes from params.yaml."""
    sys.path.insert(0, str(DAGS))
    import shoprank_wiring

    ran = []
    monkeypatch.setattr(shoprank_wiring, "run", lambda argv, what: ran.append((what, argv)))
    result = shoprank_wiring.run_stage("train@lightgbm")
    assert ran == [("train@lightgbm", ["shoprank", "train", "--candidate", "lightgbm"])]
    assert result["cmd"] == "shoprank train --candidate lightgbm"
    with pytest.raises(KeyError, match="no stage 'train@nope'"):
        shoprank_wiring.run_stage("train@nope")


def dvc_project(tmp: Path, candidates: dict) -> Path:
    """dvc.yaml and params.yaml (with these train.candidates) in a new DVC project."""
    home = tmp / "project"
    home.mkdir()
    shutil.copy(ROOT / "dvc.yaml", home / "dvc.yaml")
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["train"]["candidates"] = candidates
    (home / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    subprocess.run([str(BIN / "dvc"), "init", "--no-scm", "--quiet"], cwd=home, check=True)
    return home


def test_the_candidates_of_params_yaml_are_the_train_tasks(tmp_path, monkeypatch):
    """Edit params.yaml only: DVC renders other train stages and the DAG follows at its next parse."""
    two = {"popularity": {"reads": "train.val_share", "also": "train.test_share"},
           "lightgbm": {"reads": "lightgbm", "also": "train.seed"}}  # fmt: skip
    home = dvc_project(tmp_path, two)
    monkeypatch.setenv("SHOPRANK_HOME", str(home))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    first = parse()  # DVC asked afresh: nothing is kept for this project yet
    assert first.import_errors == {}
    assert first.parse_seconds < PARSE_BUDGET_S, f"dags/ took {first.parse_seconds:.2f} s to parse"
    dag = first.dags["shoprank_training"]
    assert training_stages(dag) == set(stage_list(home))
    assert sorted(t for t in dag.task_dict if t.startswith("train.")) == [
        "train.lightgbm",
        "train.popularity",
    ]

    raw = yaml.safe_load((home / "params.yaml").read_text())
    raw["train"]["candidates"]["bert_ctr"] = {"reads": "train", "also": "features.history_length"}
    (home / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    dag = parse().dags["shoprank_training"]
    assert "train.bert_ctr" in dag.task_dict and training_stages(dag) == set(stage_list(home))
    assert set(dag.get_task("evaluate").upstream_task_ids) == {
        f"train.{c}" for c in raw["train"]["candidates"]
    }


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
    assert {"simulate", "validate", "train@bert_ctr", "select", "understand"} <= set(lock)
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
        subprocess.run(
            [str(BIN / "shoprank"), "simulate"], cwd=home, env=env, check=True, capture_output=True
        )
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
    assert states["simulate"] == states["ingest-feedback"] == "success"
    downstream = {t: s for t, s in states.items() if t not in ("simulate", "ingest-feedback", "validate")}
    assert set(downstream.values()) == {"upstream_failed"}, downstream
    assert champion.read_bytes() == before  # the current champion keeps serving
    assert list((home / "data" / "quarantine").iterdir())  # the batch went to quarantine
    assert not (home / "data" / "validated" / "CURRENT").exists()
