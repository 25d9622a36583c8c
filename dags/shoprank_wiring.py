"""Helpers shared by the shoprank DAGs: where the project is, and how a task runs a dvc.yaml stage.

Not a DAG file (listed in .airflowignore). Nothing here imports shoprank or a heavy library
at module level, so the DAG files stay fast to parse; the task callables import what they need.

- project root: ``$SHOPRANK_HOME``, else the repository that holds this dags/ folder
- params file: ``$SHOPRANK_PARAMS``, else ``<root>/params.yaml``
- a stage's command is read from ``<root>/dvc.yaml`` when the task runs, so the DAG and
  DVC never run different commands; it runs in the project root with ``SHOPRANK_PARAMS`` set.
"""

from __future__ import annotations

import logging
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

logger = logging.getLogger("shoprank.dags")

STAGES_TRAIN = "train"  # the foreach stage: dvc.yaml names its items train@<candidate>
VALIDATION_FAILED = 1  # exit status of `shoprank validate` when the batch was quarantined


def home() -> Path:
    return Path(os.environ.get("SHOPRANK_HOME") or Path(__file__).resolve().parents[1]).resolve()


def params_file() -> Path:
    path = Path(os.environ.get("SHOPRANK_PARAMS") or home() / "params.yaml")
    return path if path.is_absolute() else (home() / path).resolve()


def task_id(stage: str) -> str:
    """dvc.yaml stage name -> Airflow task id ('@' is not allowed in task ids; a TaskGroup gives '.')."""
    return stage.replace("@", ".")


def stage_name(task: str) -> str:
    return task.replace(".", "@")


def _load_yaml(path: Path) -> Any:
    import yaml

    with path.open() as fh:
        return yaml.safe_load(fh)


def dvc_stages(dvc_yaml: Path | None = None) -> dict[str, dict]:
    """Stage name -> definition of ``dvc.yaml``, foreach expanded the way DVC names them (train@bert_ctr).

    Each foreach item gets ``key``/``item`` so its ``${key}``/``${item.x}`` can be filled in.
    """
    raw = _load_yaml(dvc_yaml or home() / "dvc.yaml")["stages"]
    stages: dict[str, dict] = {}
    for name, body in raw.items():
        if "foreach" not in body:
            stages[name] = dict(body)
            continue
        items = body["foreach"]
        pairs = items.items() if isinstance(items, dict) else ((str(i), i) for i in items)
        for key, item in pairs:
            stages[f"{name}@{key}"] = {**body["do"], "_key": key, "_item": item}
    return stages


_VAR = re.compile(r"\$\{\s*([\w.@-]+)\s*\}")


def _lookup(tree: Any, dotted: str) -> Any:
    node = tree
    for part in dotted.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


def render(text: str, stage: dict, params: dict) -> str:
    """Fill ``${key}``, ``${item...}`` and ``${<params key>}`` as DVC does (params from the params file)."""

    def sub(match: re.Match) -> str:
        name = match.group(1)
        if name == "key":
            return str(stage["_key"])
        if name == "item" or name.startswith("item."):
            return str(_lookup({"item": stage["_item"]}, name))
        return str(_lookup(params, name))

    return _VAR.sub(sub, text)


def stage_command(stage: str) -> list[str]:
    stages = dvc_stages()
    if stage not in stages:
        raise KeyError(f"dvc.yaml ({home() / 'dvc.yaml'}) has no stage {stage!r}; it has {sorted(stages)}")
    params = _load_yaml(params_file()) or {}
    return shlex.split(render(str(stages[stage]["cmd"]), stages[stage], params))


def environment() -> dict[str, str]:
    """The task's environment plus SHOPRANK_PARAMS, and this Python's bin/ first on PATH (shoprank, dvc)."""
    env = dict(os.environ)
    env["SHOPRANK_PARAMS"] = str(params_file())
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("SHOPRANK_NO_PROGRESS", "1")
    env.setdefault("GX_ANALYTICS_ENABLED", "false")
    return env


def run(argv: list[str], what: str) -> subprocess.CompletedProcess:
    """Run ``argv`` in the project root, streaming its output into the task log; raise on failure."""
    logger.info("%s: %s (in %s, SHOPRANK_PARAMS=%s)", what, shlex.join(argv), home(), params_file())
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv,
        cwd=home(),
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
    )
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        logger.info("%s", line.rstrip())
    code = proc.wait()
    seconds = round(time.perf_counter() - start, 2)
    result = subprocess.CompletedProcess(argv, code, "".join(lines[-200:]), None)
    logger.info("%s: exit status %s after %.1f s", what, code, seconds)
    if code != 0:
        raise subprocess.CalledProcessError(code, argv, output=result.stdout)
    return result


def run_stage(stage: str) -> dict[str, Any]:
    """Run one dvc.yaml stage's command; the task's XCom says what ran and for how long.

    A validation failure (the batch is quarantined) fails the task at once, without retries:
    the data is wrong, running again cannot fix it, and nothing downstream runs, so the
    current champion keeps serving.
    """
    from airflow.sdk.exceptions import AirflowFailException

    argv = stage_command(stage)
    start = time.perf_counter()
    try:
        run(argv, stage)
    except subprocess.CalledProcessError as exc:
        if stage == "validate" and exc.returncode == VALIDATION_FAILED:
            tail = (exc.output or "").strip().splitlines()[-20:]
            raise AirflowFailException(
                "validation failed, the batch was quarantined; downstream tasks do not run and the "
                "champion is unchanged:\n" + "\n".join(tail)
            ) from None
        raise
    return {"stage": stage, "cmd": shlex.join(argv), "seconds": round(time.perf_counter() - start, 2)}


def _lock_versions(lock: Path) -> dict[str, dict[str, str]]:
    """Stage -> {out path: md5} from dvc.lock (what DVC recorded for this run)."""
    if not lock.is_file():
        return {}
    raw = _load_yaml(lock) or {}
    versions: dict[str, dict[str, str]] = {}
    for stage, body in (raw.get("stages") or {}).items():
        outs = {o["path"]: o.get("md5") or o.get("hash") or "" for o in body.get("outs", [])}
        if outs:
            versions[stage] = outs
    return versions


def dvc_commit() -> str:
    """``dvc commit --force``: record in dvc.lock (and the DVC cache) what the tasks produced.

    Runs only when the params file is the project's params.yaml: DVC fills dvc.yaml's
    ``${paths...}`` from that file, so with another params file it would record the wrong files.
    """
    root = home()
    if not (root / ".dvc").is_dir():
        return f"skipped: {root} is not a DVC project"
    if params_file() != (root / "params.yaml").resolve():
        return f"skipped: SHOPRANK_PARAMS={params_file()} is not {root / 'params.yaml'}, which dvc.yaml reads"
    run([str(Path(sys.executable).with_name("dvc")), "commit", "--force", "--quiet"], "dvc commit")
    return "committed"


def run_record(run_id: str, dag_id: str) -> dict[str, Any]:
    """Commit to DVC, then write ``<metrics>/runs/<run_id>.json``: the data and model versions of this run."""
    import json

    from shoprank.config import load_params

    p = load_params(params_file())
    dvc = dvc_commit()
    root = home()

    def under_root(path: Path) -> Path:
        return path if path.is_absolute() else root / path

    validated = under_root(p.paths.validated)
    pointer = validated / "CURRENT"
    champion_file = under_root(p.paths.models) / "champion.json"
    champion = json.loads(champion_file.read_text()) if champion_file.is_file() else None
    feedback_state = under_root(p.paths.feedback) / "ingested.json"
    record = {
        "dag_id": dag_id,
        "run_id": run_id,
        "project": str(root),
        "params": str(params_file()),
        "data_batch": pointer.read_text().strip() if pointer.is_file() else None,
        "feedback": json.loads(feedback_state.read_text()) if feedback_state.is_file() else None,
        "champion": None
        if champion is None
        else {
            k: champion.get(k) for k in ("version", "candidate", "metric", "sha256", "created_at", "lineage")
        },
        "dvc": dvc,
        "dvc_lock": _lock_versions(root / "dvc.lock"),
    }
    out = under_root(p.paths.metrics) / "runs" / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', run_id)}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(record, indent=1, default=str) + "\n")
    record["path"] = str(out)
    logger.info("run record: %s", out)
    return record


def feedback_state() -> dict[str, Any]:
    """What the last `shoprank ingest-feedback` found (``<paths.feedback>/ingested.json``)."""
    import json

    from shoprank.config import load_params

    p = load_params(params_file())
    path = p.paths.feedback if p.paths.feedback.is_absolute() else home() / p.paths.feedback
    return json.loads((path / "ingested.json").read_text())
