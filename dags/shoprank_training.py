"""
### shoprank_training: the whole pipeline, one task per dvc.yaml stage

`raw` (simulate or import, by `data.source`) → `ingest-feedback` → `validate` → `features`
→ `materialize` → `training-set` → `understand` → `train.<candidate>` for each of params.yaml's
`train.candidates` (in parallel) → `evaluate` → `select` → `package` → `record`; `understand`
needs only `features` (its filled attributes feed training, evaluation, drift and `package`);
`drift` (the latest requests against the training data) runs after `evaluate` and before `record`.

* **Built from DVC.** The tasks, their order and their docs are `dvc.yaml` as DVC renders it
  (its `foreach` over `train.candidates`, its dependency graph), read with DVC's Python API
  when this file is parsed. Task ids are the stage names; DVC's `train@<candidate>` is the task
  `train.<candidate>` in the task group `train`.
* **Wiring, not logic.** Each task runs its stage's `cmd`, asked from DVC when the task runs,
  in the project root (`$SHOPRANK_HOME`) with `SHOPRANK_PARAMS` set.
* **Schedule.** Daily, and whenever `shoprank_feedback` announces enough new feedback
  (the asset `shoprank_feedback_impressions`); also by hand (*Trigger*). One run at a time, no catchup.
* **Failures.** Retries with exponential backoff. A failed validation quarantines the batch and
  fails `validate` at once (no retries): nothing downstream runs, so the current champion keeps serving.
* **Idempotent.** Every step rebuilds its outputs from its inputs (the batch id is a content
  hash, the simulator is seeded, `select` promotes only a better model): a rerun gives the same artifacts.
* **Lineage.** `record` runs `dvc commit --force` (dvc.lock then holds the hashes of what this
  run produced) and writes `<paths.metrics>/runs/<run_id>.json` with the data batch, the
  feedback counts, the champion version and the dvc.lock hashes; the same record is its XCom.

See docs/orchestration.md.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, TaskGroup, task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shoprank_wiring, beside this file
from shoprank_wiring import RETRIES, START, Stage, pipeline  # noqa: E402

FEEDBACK_ASSET = Asset(name="shoprank_feedback_impressions", uri="shoprank://feedback/impressions")
STAGES = pipeline()  # dvc.yaml's stages, one task each
BOOKKEEPING = ("record",)  # tasks that are not dvc.yaml stages
TASK_ARGS: dict[str, dict[str, Any]] = {"validate": {"retries": 0}}  # bad data does not improve on retry

default_args = {**RETRIES, "execution_timeout": timedelta(hours=6)}


def stage_task(stage: Stage, group: TaskGroup | None):
    """A task that runs ``stage`` of dvc.yaml (task id: the stage name, or its key in a foreach group)."""
    name = stage.name.split("@", 1)[1] if group is not None else stage.name
    doc = f"{stage.desc}\n\nRuns `dvc.yaml` stage `{stage.name}`: `{stage.cmd}`, in the project root."

    @task(task_id=name, doc_md=doc, task_group=group, **TASK_ARGS.get(stage.step, {}))
    def run_stage_task() -> dict:
        from shoprank_wiring import run_stage

        return run_stage(stage.name)

    return run_stage_task()


with DAG(
    dag_id="shoprank_training",
    description="The shoprank pipeline: raw -> validate -> features -> train -> select -> package",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=[FEEDBACK_ASSET]
    ),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["shoprank", "training"],
) as dag:
    # a foreach stage (train@<candidate>) is a task group of parallel tasks
    steps = dict.fromkeys(s.step for s in STAGES if "@" in s.name)  # each once, in dvc.yaml's order
    groups = {step: TaskGroup(step, tooltip=f"dvc.yaml's {step}@<key> stages, in parallel") for step in steps}
    tasks = {s.name: stage_task(s, groups.get(s.step)) for s in STAGES}
    for s in STAGES:
        for up in s.upstream:
            tasks[up] >> tasks[s.name]

    @task(task_id="record", retries=1)
    def record() -> dict:
        """`dvc commit --force`, then the run record (batch, champion, dvc.lock hashes): file and XCom."""
        from airflow.sdk import get_current_context
        from shoprank_wiring import run_record

        ctx = get_current_context()
        return run_record(ctx["run_id"], ctx["dag"].dag_id)

    feeds = {up for s in STAGES for up in s.upstream}
    [tasks[s.name] for s in STAGES if s.name not in feeds] >> record()  # after the last stages
