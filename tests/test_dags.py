"""The Airflow DAGs: they parse fast and cleanly, and shoprank_training is dvc.yaml's stages one
to one (tasks and edges, as DVC renders them). tests/test_dag_runs.py runs them end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT

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
    assert set(dagbag.dags) == {"shoprank_training", "shoprank_feedback", "shoprank_experiment"}
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
    experiment = dagbag.dags["shoprank_experiment"]  # the experiment's report, daily
    assert list(experiment.task_dict) == ["experiment"] and "0 0 * * *" in repr(experiment.timetable)


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
    assert set(dag.get_task("record").upstream_task_ids) == {"package", "drift"}  # after the last stages
    assert set(dag.get_task("drift").upstream_task_ids) == {"evaluate"}


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
    # it reads the features and the training set, and the candidates' training reads its heads
    assert not {"understand", "package"} & ancestors(dag_edges, "understand")
    assert "understand" in ancestors(dag_edges, "train@bert_ctr")


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
