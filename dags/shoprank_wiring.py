"""Helpers shared by the shoprank DAGs: where the project is, and what its dvc.yaml stages are.

Not a DAG file (listed in .airflowignore). Nothing here imports shoprank or a heavy library
at module level, so the DAG files stay fast to parse; the task callables import what they need.

- project root: ``$SHOPRANK_HOME``, else the repository that holds this dags/ folder
- params file: ``$SHOPRANK_PARAMS``, else ``<root>/params.yaml``
- the stages (names, commands, descriptions, which stage reads which one's outputs) are
  dvc.yaml as DVC itself renders it (``foreach`` over params.yaml's ``train.candidates``,
  ``${...}`` filled in), read with DVC's Python API: :func:`dvc_pipeline`. A task reads its
  command when it runs, so the DAG and ``dvc repro`` never run different commands; it runs in
  the project root with ``SHOPRANK_PARAMS`` set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from importlib.metadata import version
from pathlib import Path
from typing import Any

logger = logging.getLogger("shoprank.dags")

START = datetime(2025, 1, 1, tzinfo=UTC)  # every DAG's start date (no catch-up runs)
# every task's retries: 30 s, then 60 s, ... capped at 10 minutes
RETRIES: dict[str, Any] = {
    "owner": "shoprank",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": timedelta(minutes=10),
}
VALIDATION_FAILED = 1  # exit status of `shoprank validate` when the batch was quarantined
PIPELINE_CACHE = ".dvc/tmp/shoprank-pipeline.json"  # under the root: DVC's rendering, by input digest


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


@dataclass(frozen=True)
class Stage:
    """One stage of dvc.yaml as DVC renders it."""

    name: str  # DVC's name: ``features``, or ``train@<candidate>`` for an item of a foreach stage
    cmd: str
    desc: str
    upstream: tuple[str, ...]  # the stages whose outputs it reads, less those implied by the others

    @property
    def step(self) -> str:
        """The pipeline step: the CLI command and, for a foreach item, the Airflow task group."""
        return self.name.split("@")[0]


def dvc_pipeline(root: Path | None = None) -> list[Stage]:
    """The stages of ``<root>/dvc.yaml`` in file order, from DVC's own index and graph.

    ``upstream`` is DVC's dependency graph (an output of one stage is a dependency of another)
    after transitive reduction: Airflow then draws only the edges that order something.
    """
    import networkx as nx
    from dvc.repo import Repo
    from dvc.stage import PipelineStage

    root = (root or home()).resolve()
    with Repo(str(root)) as repo:
        graph = repo.index.graph  # an edge runs from a stage to a stage it depends on
        reduced = nx.transitive_reduction(graph)
        stages = []
        for stage in repo.index.stages:
            if not isinstance(stage, PipelineStage):
                continue  # a .dvc file: data added by hand, nothing to run
            if Path(stage.path) != root / "dvc.yaml":
                raise ValueError(f"{stage.path}: the DAG runs the stages of {root / 'dvc.yaml'} only")
            if not isinstance(stage.cmd, str):
                raise ValueError(f"dvc.yaml stage {stage.name}: one command per stage, not a list")
            upstream = sorted(s.name for s in reduced.successors(stage) if isinstance(s, PipelineStage))
            stages.append(Stage(stage.name, stage.cmd, stage.desc or "", tuple(upstream)))
    return stages


def _digest(root: Path) -> str:
    """What DVC's rendering depends on: dvc.yaml, params.yaml (foreach, ``${...}``) and DVC's version."""
    h = hashlib.sha256(version("dvc").encode())
    for name in ("dvc.yaml", "params.yaml"):
        path = root / name
        h.update(name.encode() + (path.read_bytes() if path.is_file() else b"-"))
    return h.hexdigest()


def pipeline(root: Path | None = None) -> list[Stage]:
    """:func:`dvc_pipeline`, kept in ``<root>/.dvc/tmp`` while dvc.yaml and params.yaml are unchanged.

    Airflow parses a DAG file often (and again before each task); asking DVC costs a fraction
    of a second each time, a digest of two small files almost nothing.
    """
    root = root or home()
    cache, digest = root / PIPELINE_CACHE, _digest(root)
    try:
        kept = json.loads(cache.read_text())
        if kept["digest"] == digest:
            return [Stage(**{**s, "upstream": tuple(s["upstream"])}) for s in kept["stages"]]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    stages = dvc_pipeline(root)
    try:  # a read-only project still works, without the shortcut
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"digest": digest, "stages": [asdict(s) for s in stages]}))
        tmp.replace(cache)
    except OSError:
        pass
    return stages


def stage_command(stage: str) -> list[str]:
    """The command of ``stage`` as DVC renders it now (not the cached rendering)."""
    stages = {s.name: s for s in dvc_pipeline()}
    if stage not in stages:
        raise KeyError(f"dvc.yaml ({home() / 'dvc.yaml'}) has no stage {stage!r}; it has {sorted(stages)}")
    return shlex.split(stages[stage].cmd)


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


def _project_params():
    from shoprank.config import load_params

    return load_params(params_file())


def experiment_name() -> str:
    """The experiment params.yaml configures (``experiment.name``; empty: none)."""
    return _project_params().experiment.name


def experiment_summary() -> dict[str, Any]:
    """What the last `shoprank experiment` decided: ``<paths.metrics>/experiment.json``, in short."""
    import json

    p = _project_params()
    metrics = p.paths.metrics if p.paths.metrics.is_absolute() else home() / p.paths.metrics
    report = json.loads((metrics / "experiment.json").read_text())
    srm = report.get("srm") or {}
    return {
        "experiment": report["experiment"],
        "requests": report["requests"],
        "decisions": report["decisions"],
        "sample_ratio_mismatch": bool(srm.get("flagged")),
        "note": report["note"],
    }
