"""catalog_housekeeping: daily retention for the catalog and reconciliation with the object store."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from operators.catalog.housekeeping import RETENTION_BOUNDS, Policy

DOC = """
### catalog_housekeeping

Daily. Keeps the catalog small and honest; the logic is `operators/catalog/housekeeping.py`.

**Pruned** when older than their retention (params, in days):

| table | rows that go | param (default) |
|---|---|---|
| `machine_status` | every row (the `machine_status` DAG writes one per machine per minute) | `machine_status_days` (7) |
| `machine_selections` | every decision | `selection_days` (30) |
| `services` | rows in a final state: `stopped`, `failed`, `reaped:<reason>` (live or unknown states stay) | `service_days` (30) |
| `jobs` (+ their `job_states`) | jobs in a terminal state that **no dataset** names as its producer | `job_days` (90) |
| `job_notices` | every completion notice received (a nonce is refused twice while its row is kept; replayed after, it only makes a poller look once more) | `notice_days` (7) |

**Never pruned**: incidents, incident runs, datasets and lineage — provenance.

**Reconciled** with the object store (the `object_store` Connection's bucket), under the prefixes our
code catalogues (`incidents/`, `drill/`):

- a dataset row whose object is **missing**, or whose object's recorded sha256 (or size) **differs**, is
  **reported** (log warnings and the summary), never deleted;
- an object with **no dataset row** and older than `orphan_grace_hours` (24: a task may be between its
  upload and its catalog insert) is an **orphan** of a crashed task: reported, and deleted only when
  `delete_orphans` is true.

`dry_run` changes nothing and reports what would go. Work is done in bounded batches (at most 100 000
rows or objects per category and run; `more_left` in the summary names what the next run finishes).
The task returns the summary (XCom): `counts` per category, and the reported items (first 100 each).
"""

DEFAULT = Policy()


@dag(
    dag_id="catalog_housekeeping",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    tags=["urgentflow", "catalog", "operations"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(minutes=5)},
    dagrun_timeout=timedelta(hours=2),
    params={
        "dry_run": Param(DEFAULT.dry_run, type="boolean", description="change nothing, report what would go"),
        "delete_orphans": Param(
            DEFAULT.delete_orphans, type="boolean", description="delete orphan objects (else report them)"
        ),
        **{
            name: Param(getattr(DEFAULT, name), type="integer", minimum=low, maximum=high)
            for name, (low, high) in RETENTION_BOUNDS.items()
        },
    },
)
def catalog_housekeeping() -> None:
    @task(execution_timeout=timedelta(hours=1))
    def housekeep(params: dict | None = None) -> dict[str, Any]:
        from datetime import UTC, datetime

        from operators.catalog.catalog import Catalog
        from operators.catalog.housekeeping import housekeep as run_housekeeping
        from operators.storage.hook import ObjectStoreHook

        policy = Policy.from_params(params or {})
        return run_housekeeping(Catalog(), ObjectStoreHook(), policy, datetime.now(UTC))

    housekeep()


catalog_housekeeping()
