"""
### shoprank_training: the whole pipeline, one task per dvc.yaml stage

`simulate` → `ingest-feedback` → `validate` → `features` → `materialize` → `training-set`
→ `train.bert_ctr` · `train.no_text` · `train.lightgbm` · `train.popularity` (in parallel)
→ `evaluate` → `select` → `package` → `record`

* **Wiring, not logic.** Each task runs its stage's `cmd` from `dvc.yaml` (read when the task
  runs, so the DAG and `dvc repro` never run different commands) in the project root
  (`$SHOPRANK_HOME`) with `SHOPRANK_PARAMS` set. Task ids are the stage names; DVC's
  `train@bert_ctr` is the task `train.bert_ctr` in the task group `train`.
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG, Asset, AssetOrTimeSchedule, CronTriggerTimetable, TaskGroup, task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shoprank_wiring, beside this file
from shoprank_wiring import task_id  # noqa: E402

FEEDBACK_ASSET = Asset(name="shoprank_feedback_impressions", uri="shoprank://feedback/impressions")
CANDIDATES = ("bert_ctr", "no_text", "lightgbm", "popularity")  # dvc.yaml's train foreach
BEFORE_TRAIN = ("simulate", "ingest-feedback", "validate", "features", "materialize", "training-set")
AFTER_TRAIN = ("evaluate", "select", "package")
STAGES = (*BEFORE_TRAIN, *(f"train@{c}" for c in CANDIDATES), *AFTER_TRAIN)  # one task each
BOOKKEEPING = ("record",)  # tasks that are not dvc.yaml stages

DOCS = {
    "simulate": "Simulate the marketplace of the params' profile into `paths.raw` (seeded: the same data "
    "every run).",
    "ingest-feedback": "Turn the service's feedback log into contract impressions; bad records go to "
    "quarantine.",
    "validate": "Great Expectations gate over raw + feedback impressions. Fails (no retry) when the batch "
    "is quarantined, which stops every task downstream.",
    "features": "Time-stamped item, user and query features with MiniLM text embeddings.",
    "materialize": "`feast apply` and incremental materialisation into the online store.",
    "training-set": "Feast point-in-time join of the features onto every impression.",
    "train": "Train one candidate on the training set; the four run in parallel.",
    "evaluate": "Every candidate on the time-based test split: `metrics/evaluate.json`.",
    "select": "Promote the winner to champion only if it beats the current one by the margin.",
    "package": "Package the champion into the BentoML model store for serving.",
}

default_args = {
    "owner": "shoprank",
    "retries": 2,
    "retry_delay": timedelta(seconds=30),
    "retry_exponential_backoff": 2.0,  # 30 s, then 60 s, ... capped below
    "max_retry_delay": timedelta(minutes=10),
    "execution_timeout": timedelta(hours=6),
}


def stage_task(stage: str, **kwargs):
    """A task that runs ``stage`` of dvc.yaml (task id: the stage name, '@' -> '.' in a group)."""
    name = stage.split("@")[-1] if "@" in stage else stage
    doc = DOCS[stage.split("@")[0]] + f"\n\nRuns `dvc.yaml` stage `{stage}`: its `cmd`, in the project root."

    @task(task_id=name, doc_md=doc, **kwargs)
    def run_stage_task() -> dict:
        from shoprank_wiring import run_stage

        return run_stage(stage)

    return run_stage_task()


with DAG(
    dag_id="shoprank_training",
    description="The shoprank pipeline: simulate -> validate -> features -> train -> select -> package",
    doc_md=__doc__,
    schedule=AssetOrTimeSchedule(
        timetable=CronTriggerTimetable("@daily", timezone="UTC"), assets=[FEEDBACK_ASSET]
    ),
    start_date=datetime(2025, 1, 1, tzinfo=UTC),
    catchup=False,
    max_active_runs=1,
    default_args=default_args,
    tags=["shoprank", "training"],
) as dag:
    # bad data does not improve on retry: validate fails at once
    before = [stage_task(s, **({"retries": 0} if s == "validate" else {})) for s in BEFORE_TRAIN]
    with TaskGroup("train", tooltip="one task per candidate, in parallel") as train:
        trained = [stage_task(f"train@{c}") for c in CANDIDATES]
    after = [stage_task(s) for s in AFTER_TRAIN]

    @task(task_id="record", retries=1)
    def record() -> dict:
        """`dvc commit --force`, then the run record (batch, champion, dvc.lock hashes): file and XCom."""
        from airflow.sdk import get_current_context
        from shoprank_wiring import run_record

        ctx = get_current_context()
        return run_record(ctx["run_id"], ctx["dag"].dag_id)

    done = record()
    for up, down in zip(before, before[1:], strict=False):
        up >> down
    before[-1] >> train >> after[0]
    for up, down in zip(after, after[1:], strict=False):
        up >> down
    after[-1] >> done

assert {task_id(s) for s in STAGES} | set(BOOKKEEPING) == set(dag.task_dict), "tasks and STAGES drifted"
