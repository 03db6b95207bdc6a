"""machine_status: every minute, the live state of every machine of the catalog, into the catalog."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

DOC = """
### machine_status

Every minute, each enabled machine of `include/machines.yaml` is asked **one** batched command over
its SSH Connection (Slurm: `sinfo` per node and partition + `squeue` summary; Grid Engine and
`local`: their equivalents). All machines are probed at once; one that does not answer within
`probe_timeout` seconds is recorded **down** with the reason, without delaying the others.

Each probe writes a `machine_status` row to the catalog: `up` / `degraded` (nodes or partitions out of
service) / `down`, nodes and cores idle/allocated per partition, running and queued jobs (ours and
everyone's), the SSH round-trip latency and the last error. `SelectMachineOperator` reads these rows
(and probes live when they are older than its `max_status_age_seconds`); the **Machines** page of the
UI shows them. The `catalog_housekeeping` DAG prunes old rows (7 days by default).
"""


@dag(
    dag_id="machine_status",
    schedule=timedelta(minutes=1),
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "machines", "operations"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=10)},
    max_active_runs=1,
    dagrun_timeout=timedelta(minutes=3),
)
def machine_status() -> None:
    @task(execution_timeout=timedelta(minutes=2))
    def probe_machines(probe_timeout: float = 20.0) -> dict[str, str]:
        from operators.catalog.catalog import Catalog
        from operators.machines.catalog import load_catalog
        from operators.machines.status import probe_all

        catalog = Catalog()
        states = {}
        for status in probe_all(load_catalog().values(), timeout=probe_timeout):
            status.record(catalog)
            states[status.machine] = status.state
            print(f"{status.machine}: {status.state} latency {status.latency_ms} ms {status.error}")
        return states

    probe_machines()


machine_status()
