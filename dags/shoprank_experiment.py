"""
### shoprank_experiment: the daily report of the online experiment

`experiment`: runs `shoprank experiment` in the project root (`$SHOPRANK_HOME`, with
`SHOPRANK_PARAMS` set), the step that reads the experiment of params.yaml (`experiment.name`)
from the service's feedback log and writes `<paths.metrics>/experiment.json`: per arm the
requests, impressions, CTR and per-request clicks, purchases and revenue with intervals, the
sample-ratio check, and the always-valid sequential test's decision (challenger better,
champion better or continue). Records it cannot credit to an arm go to
`<paths.quarantine>/experiment/`. The task's XCom is the decisions and the split check.

When params.yaml configures no experiment (`experiment.name` is empty) the task is skipped.
The report is rebuilt from the whole log, so a rerun writes the same report. With
`experiment.gate_promotion`, `shoprank select` (in `shoprank_training`) reads this report
before it promotes a challenger.

Daily, one run at a time, no catchup. See docs/experiments.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

from airflow.sdk import DAG, task

sys.path.insert(0, str(Path(__file__).resolve().parent))  # shoprank_wiring, beside this file
from shoprank_wiring import RETRIES, START  # noqa: E402

with DAG(
    dag_id="shoprank_experiment",
    description="Read the online experiment from the feedback log: arms, split check, sequential decision",
    doc_md=__doc__,
    schedule="@daily",
    start_date=START,
    catchup=False,
    max_active_runs=1,
    default_args=RETRIES,
    tags=["shoprank", "experiment"],
) as dag:

    @task(task_id="experiment")
    def experiment() -> dict:
        """Run `shoprank experiment`; skipped when no experiment is configured. XCom: the decisions."""
        from airflow.sdk.exceptions import AirflowSkipException
        from shoprank_wiring import experiment_name, experiment_summary, run

        if not experiment_name():
            raise AirflowSkipException(
                "no experiment is configured (experiment.name is empty in params.yaml)"
            )
        run(["shoprank", "experiment"], "experiment")
        return experiment_summary()

    experiment()
