"""service_reaper: every two minutes, close the service containers nobody needs any more."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

DOC = """
### service_reaper

Every two minutes, every service container **of ours** (label `urgentflow.service=1`; nothing else
on the engine is ever touched) is checked and removed when:

- its **TTL** expired (`ttl_minutes` of `StartServiceOperator`),
- its **keep-alive** stopped: it set `keepalive_seconds` and nobody called
  `POST /urgentflow/services/{id}/keepalive` (the UI page or the service itself) for that long —
  "closed on disconnect",
- or the **DAG run** that started it is finished (success or failed), or Airflow does not know that
  run and the container is older than 10 minutes.

A container younger than 10 minutes whose catalog row is missing or says `starting` is left to the
task that is starting it (that task removes it itself when it never gets ready).

The catalog row of each removed service is marked `reaped:<reason>`. Teardown tasks
(`StopServiceOperator`) close services at the end of their run; the reaper catches what they could not
(a killed worker, a cleared run, a service left running on purpose until its TTL).
"""


def run_state(dag_id: str, run_id: str) -> str | None:
    """Ask Airflow (through the task's execution API) for a DAG run's state; None when it has no such run."""
    from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

    try:
        state = RuntimeTaskInstance.get_dagrun_state(dag_id=dag_id, run_id=run_id)
    except Exception as exc:
        if "not found" in str(exc).lower() or "not_found" in str(exc).lower():
            return None
        raise
    return str(getattr(state, "value", state))  # the SDK's DagRunState enum prints as "DagRunState.X"


@dag(
    dag_id="service_reaper",
    schedule=timedelta(minutes=2),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "services", "operations"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=20)},
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=5),
)
def service_reaper() -> None:
    @task(execution_timeout=timedelta(minutes=3))
    def reap_services() -> list[dict]:
        from datetime import UTC, datetime

        from operators.catalog.catalog import Catalog
        from operators.services.hook import ServiceHook
        from operators.services.reaper import reap

        reaped = reap(ServiceHook(), Catalog(), datetime.now(UTC), run_state)
        return [
            {"service_id": r.service_id, "container_id": r.container_id, "reason": str(r.reason)}
            for r in reaped
        ]

    reap_services()


service_reaper()
