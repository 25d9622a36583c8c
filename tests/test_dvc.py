"""dvc.yaml: every stage is a CLI step; `dvc repro` runs the tiny pipeline, a second run does
nothing, and a changed param re-runs only the stages that read it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from shoprank.cli import app
from tests.conftest import ROOT, tiny_raw_params

DVC = str(Path(sys.executable).with_name("dvc"))


def dvc_stages(root: Path = ROOT) -> dict:
    """dvc.yaml as DVC renders it: stage name (``train@bert_ctr`` for a foreach item) -> DVC's stage."""
    from dvc.repo import Repo

    with Repo(str(root)) as repo:
        return {s.addressing: s for s in repo.index.stages}


def stage_params(stage) -> list[str]:
    from dvc.dependency import ParamsDependency

    return [key for dep in stage.deps if isinstance(dep, ParamsDependency) for key in dep.params]


def test_every_stage_calls_its_own_cli_command():
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name, stage in dvc_stages().items():
        step, _, key = name.partition("@")
        words = stage.cmd.split()
        assert words[:2] == ["shoprank", step], f"stage {name} must call `shoprank {step}`: {stage.cmd}"
        assert step in commands, f"stage {name}: no CLI command {step!r}"
        assert not key or words[2:4] == ["--candidate", key], f"stage {name} trains another candidate"


def test_stage_params_exist_in_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, stage in dvc_stages().items():
        for key in stage_params(stage):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"stage {name} reads {key}: not in params"
                node = node[part]


def test_candidates_are_listed_in_params_yaml_only():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    candidates = list(params["train"]["candidates"])
    stages = dvc_stages()
    assert [n.split("@")[1] for n in stages if n.startswith("train@")] == candidates
    # each candidate re-trains on the split and on the two keys params.yaml gives it
    for name, reads in params["train"]["candidates"].items():
        keys = set(stage_params(stages[f"train@{name}"]))
        assert keys == {"train.val_share", "train.test_share", reads["reads"], reads["also"]}, name
    assert set(stage_params(stages["train@lightgbm"])) >= {"lightgbm"}  # rounds re-train LightGBM only
    texts = [(ROOT / "dvc.yaml").read_text(), *(p.read_text() for p in (ROOT / "dags").glob("*.py"))]
    for candidate in candidates:
        assert not any(candidate in text for text in texts), f"{candidate} is named outside params.yaml"


def test_understand_is_a_step_that_package_reads():
    stages = dvc_stages()
    understand, package = stages["understand"], stages["package"]
    outs = {str(o.def_path) for o in understand.outs}
    assert {"models/understanding", "metrics/understand.json"} <= outs
    assert "models/understanding" in {str(d.def_path) for d in package.deps}
    # the query-category head is fitted on the training split: it reads the split's settings
    assert stage_params(understand) == ["understand", "train.val_share", "train.test_share"]
    assert "data/training" in {str(d.def_path) for d in understand.deps}
    for reader in ("train@bert_ctr", "evaluate", "drift"):  # each derives the inputs the heads feed
        assert "models/understanding" in {str(d.def_path) for d in stages[reader].deps}, reader


def test_adapt_runs_upstream_of_what_encodes_and_switching_encoder_reruns_them():
    """features and package read the identity file of text.encoder's encoder, which adapt writes."""
    from dvc.repo import Repo

    stages = dvc_stages()
    adapt = stages["adapt"]
    assert {str(o.def_path) for o in adapt.outs} >= {"models/encoders", "metrics/adapt.json"}
    assert {"adapt", "train.val_share", "train.test_share", "text.model_dir"} <= set(stage_params(adapt))
    assert "text.encoder" not in stage_params(adapt)  # it trains and compares whichever is in use
    for name in ("features", "package"):
        assert "models/encoders/stock.json" in {str(d.def_path) for d in stages[name].deps}, name
    assert {"text.encoder", "text.encoders_dir"} <= set(stage_params(stages["package"]))
    assert "text" in stage_params(stages["features"])
    with Repo(str(ROOT)) as repo:
        graph = repo.index.graph  # edges point from a stage to the stages it depends on
        by_name = {s.addressing: s for s in graph.nodes}
        assert graph.has_edge(by_name["features"], by_name["adapt"])
        assert graph.has_edge(by_name["package"], by_name["adapt"])


def _repo_copy(tmp: Path) -> Path:
    """A git repository of the project's tracked files, on the tiny profile with small models."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    repo = tmp / "repo"
    for rel in files:
        src = ROOT / rel
        if src.is_file() and not rel.startswith(("metrics/", "models/", "dvc.lock")):
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, repo / rel)
    (repo / "data/feedback/log").mkdir(parents=True, exist_ok=True)
    raw = tiny_raw_params()
    raw["text"]["cache_dir"] = str(tmp / "cache")
    (repo / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "tiny"], cwd=repo, check=True)
    return repo


def _dvc(repo: Path, *args: str, fails: bool = False) -> str:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "SHOPRANK_NO_PROGRESS": "1"}
    env["BENTOML_HOME"] = str(repo.parent / "bentoml")  # the package stage: never the user's model store
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env.pop("SHOPRANK_PARAMS", None)
    out = subprocess.run([DVC, *args], cwd=repo, env=env, capture_output=True, text=True)
    if fails:
        assert out.returncode != 0, f"dvc {' '.join(args)} should have failed:\n{out.stdout}"
    else:
        assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout + out.stderr


def _ran(output: str) -> set[str]:
    return {line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage '")}


@pytest.mark.slow
@pytest.mark.integration
def test_dvc_repro_runs_once_then_only_what_a_param_change_touches(tmp_path):
    repo = _repo_copy(tmp_path)
    first = _dvc(repo, "repro")
    assert _ran(first) >= set(dvc_stages()) - {"package"}
    assert (repo / "models/champion.json").is_file()
    assert "Data and pipelines are up to date" in _dvc(repo, "status")

    second = _dvc(repo, "repro")
    assert _ran(second) == set(), f"a second `dvc repro` re-ran {_ran(second)}"

    # a LightGBM knob: only its training stage is out of date (evaluate and select follow once it runs)
    text = (repo / "params.yaml").read_text()
    (repo / "params.yaml").write_text(text.replace("rounds: 50", "rounds: 51"))
    status = _dvc(repo, "status")
    stale = {line.rstrip(":") for line in status.splitlines() if line and not line[0].isspace()}
    assert stale == {"train@lightgbm"}

    metrics = _dvc(repo, "metrics", "show", "--json")
    assert "evaluate.json" in metrics and "auc" in metrics
