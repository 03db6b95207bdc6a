"""batch_orphan_sweep: every 5 minutes, batch jobs whose task instance no longer owns them are cancelled."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, get_current_context, task

DOC = """
### batch_orphan_sweep

Every 5 minutes: our batch jobs that the catalog does not know to have ended, and whose task instance
no longer runs, waits for them (deferred) or will retry (a member marked failed before a triggerer
started its trigger, a run that failed or was deleted), are **cancelled** on their machine (one status
and one cancel command per machine), marked judged (a later clear of the task submits afresh) and
recorded `CANCELLED` in the catalog; jobs that ended meanwhile get their real end state recorded. Jobs
younger than `min_age_seconds` are left alone (they may be between submission and deferral).
"""


@dag(
    dag_id="batch_orphan_sweep",
    schedule=timedelta(minutes=5),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "hpc", "operations"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=30)},
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=4),
    params={
        "min_age_seconds": Param(
            120, type="integer", minimum=0, maximum=86400, description="leave younger jobs alone"
        )
    },
)
def batch_orphan_sweep() -> None:
    @task(execution_timeout=timedelta(minutes=3))
    def sweep() -> list[dict]:
        from operators.catalog.catalog import Catalog
        from operators.hpc.sweep import sweep as sweep_orphans

        context = get_current_context()
        ti = context["ti"]

        def task_states(dag_id: str, run_ids: list[str]) -> dict:
            return dict(ti.get_task_states(dag_id=dag_id, run_ids=run_ids))

        return sweep_orphans(
            Catalog(), task_states, min_age_seconds=float(context["params"]["min_age_seconds"])
        )

    sweep()


batch_orphan_sweep()
