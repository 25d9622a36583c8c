"""
### shoprank_feedback: the feedback loop

`ingest-feedback` → `enough-new-data` → `validate` → `announce`

1. **ingest-feedback** runs `shoprank ingest-feedback` (the `dvc.yaml` stage's `cmd`): the
   service's append-only feedback log under `<paths.feedback>/log/` becomes contract
   impressions in `<paths.feedback>/impressions.parquet`; records that break the contract
   or the rules go to `<paths.quarantine>/feedback-<hash>/` with a reason. The table is
   rebuilt from the whole log every time, so running twice never adds a record twice.
2. **enough-new-data** (short circuit) reads `<paths.feedback>/ingested.json`: it goes on only
   when the impressions pending since the last signal reach `feedback.min_new_impressions`
   (params.yaml); otherwise the rest is skipped.
3. **validate** runs the Great Expectations gate over the raw batch plus the feedback rows.
4. **announce** emits an event on the asset `shoprank_feedback_impressions`, which schedules
   `shoprank_training`.

Hourly, one run at a time, no catchup. See docs/orchestration.md.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shoprank_wiring, beside this file
from shoprank_wiring import RETRIES, START  # noqa: E402

FEEDBACK_ASSET = Asset(name="shoprank_feedback_impressions", uri="shoprank://feedback/impressions")

with DAG(
    dag_id="shoprank_feedback",
    description="Ingest the service's feedback log; schedule training when enough new impressions arrived",
    doc_md=__doc__,
    schedule="@hourly",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    tags=["shoprank", "feedback"],
) as dag:

    @task(task_id="ingest-feedback")
    def ingest() -> dict:
        """Run `shoprank ingest-feedback` (dvc.yaml's command); XCom: the counts in ingested.json."""
        from shoprank_wiring import feedback_state, run_stage

        run_stage("ingest-feedback")
        return feedback_state()

    @task.short_circuit(task_id="enough-new-data")
    def enough(state: dict) -> bool:
        """Go on only if the pending impressions reach `feedback.min_new_impressions`."""
        print(
            f"pending impressions {state['pending_impressions']} "
            f"(new since the previous ingest: {state['new_impressions']}), "
            f"threshold {state['min_new_impressions']}: {'ready' if state['ready'] else 'not yet'}"
        )
        return bool(state["ready"])

    @task(task_id="validate", retries=0)
    def validate() -> dict:
        """The Great Expectations gate over raw + feedback impressions (quarantine on failure)."""
        from shoprank_wiring import run_stage

        return run_stage("validate")

    @task(task_id="announce", outlets=[FEEDBACK_ASSET])
    def announce(state: dict, *, outlet_events=None) -> dict:
        """Emit the asset event that schedules `shoprank_training` (extra: the counts)."""
        extra = {k: state[k] for k in ("impressions", "pending_impressions", "new_impressions", "clicks")}
        outlet_events[FEEDBACK_ASSET].extra = extra
        return extra

    state: Any = ingest()  # an XComArg: the task's return value once it has run
    enough(state) >> validate() >> announce(state)
