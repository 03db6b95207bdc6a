"""verify_published: re-check every object staging publishes, as soon as it is published."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from operators.storage.assets import PUBLISHED

DOC = """
### verify_published

Scheduled on the **`urgentflow_published`** Asset: it runs whenever a task that publishes results
(`StageFromMachineOperator` with `outlets=[PUBLISHED]`) succeeds. For every object named in the
triggering Asset events it reads the bytes back from the object store, re-hashes them, and checks them
against the sha256 recorded on the object **and** the catalog's dataset row (size and sha256). Any
difference fails the run with the list of objects that do not match; nothing is changed.
"""


@dag(
    dag_id="verify_published",
    schedule=[PUBLISHED],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "catalog", "operations"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=10)},
    # No max_active_runs cap on purpose: with max_active_runs=1, Airflow 3.3 leaves events that arrive
    # while a run is active queued until some later event (apache/airflow#56050); runs here only read.
)
def verify_published() -> None:
    @task
    def verify(triggering_asset_events: dict | None = None) -> dict:
        from operators.catalog.catalog import Catalog
        from operators.storage.hook import ChecksumMismatch, ObjectStoreHook

        catalog = Catalog()
        stores: dict[str, ObjectStoreHook] = {}
        checked, problems = [], []
        for event in (triggering_asset_events or {}).get(PUBLISHED, []):
            bucket = event.extra.get("bucket")
            store = stores.setdefault(bucket, ObjectStoreHook(bucket=bucket))
            for obj in event.extra.get("objects", []):
                key = obj["key"]
                try:
                    size = sum(len(chunk) for chunk in store.iter_verified(key))
                    row = catalog.dataset(int(obj["dataset_id"])) or {}
                    stat = store.stat(key)
                    if (row.get("key"), row.get("sha256"), row.get("size")) != (key, stat.sha256, size):
                        problems.append(f"{bucket}/{key}: catalog row {row or 'missing'} != store {stat}")
                except ChecksumMismatch as exc:
                    problems.append(str(exc))
                checked.append(key)
        if problems:
            raise ValueError(f"{len(problems)} published object(s) do not match: " + "; ".join(problems))
        return {"verified": len(checked), "keys": sorted(checked)}

    verify()


verify_published()
