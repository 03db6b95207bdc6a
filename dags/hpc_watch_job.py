"""hpc_watch_job: wait for a batch job started outside Airflow, then let downstream work run."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag

from operators.hpc.sensors import BatchJobSensor

DOC = """
### hpc_watch_job

For a job an operator submitted at the console (or another system did): give its `machine`
(from `include/machines.yaml`) and native `job_id`. The sensor waits in the triggerer through the
machine's shared poller and succeeds when the job COMPLETED; any other end (FAILED with its exit
code, TIMEOUT, OUT_OF_MEMORY, CANCELLED, ...) fails the task with that state. Add downstream tasks to
this DAG, or copy the sensor into yours.
"""


@dag(
    dag_id="hpc_watch_job",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "hpc", "operations"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=10)},
    params={
        "machine": Param("alpha", type="string", pattern="^[A-Za-z0-9_-]{1,64}$"),
        "job_id": Param("1", type="string", pattern="^[0-9]{1,12}$", description="native job id"),
    },
)
def hpc_watch_job() -> None:
    BatchJobSensor(
        task_id="wait_for_job",
        machine="{{ params.machine }}",
        job_id="{{ params.job_id }}",
        poke_interval=2,
        timeout=24 * 3600,
    )


hpc_watch_job()
