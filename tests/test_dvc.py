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


def dvc_stages() -> dict[str, dict]:
    """Stage name -> definition, with foreach expanded the way DVC names them (train@bert_ctr)."""
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    stages = {}
    for name, body in raw.items():
        if "foreach" in body:
            for key, item in body["foreach"].items():
                stages[f"{name}@{key}"] = {"cmd": body["do"]["cmd"].replace("${key}", key), "item": item}
        else:
            stages[name] = body
    return stages


def test_every_stage_calls_its_own_cli_command():
    commands = set(get_command(app).commands)  # type: ignore[attr-defined]
    for name, body in dvc_stages().items():
        step = name.split("@")[0]
        words = body["cmd"].split()
        assert words[:2] == ["shoprank", step], f"stage {name} must call `shoprank {step}`: {body['cmd']}"
        assert step in commands, f"stage {name}: no CLI command {step!r}"


def test_stage_params_exist_in_params_yaml():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, body in raw.items():
        stage = body.get("do", body)
        keys = list(stage.get("params", []))
        for item in body.get("foreach", {}).values():
            keys += [k.replace("${item.reads}", item["reads"]) for k in keys]
            keys += [k.replace("${item.also}", item["also"]) for k in keys]
        for key in (k for k in keys if "${" not in k):
            node = params
            for part in key.split("."):
                assert isinstance(node, dict) and part in node, f"stage {name} reads {key}: not in params"
                node = node[part]


def test_candidates_stage_list_matches_params():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    trained = {n.split("@")[1] for n in dvc_stages() if n.startswith("train@")}
    assert trained == set(params["train"]["candidates"])


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


def _dvc(repo: Path, *args: str) -> str:
    path = f"{Path(sys.executable).parent}:{os.environ['PATH']}"
    env = {**os.environ, "PATH": path, "SHOPRANK_NO_PROGRESS": "1"}
    env["BENTOML_HOME"] = str(repo.parent / "bentoml")  # the package stage: never the user's model store
    env["BENTOML_DO_NOT_TRACK"] = "True"
    env.pop("SHOPRANK_PARAMS", None)
    out = subprocess.run([DVC, *args], cwd=repo, env=env, capture_output=True, text=True)
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
