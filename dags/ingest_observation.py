"""ingest_observation: data pushed for an incident is checked, applied, and its forecast runs again."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pendulum
from airflow.providers.standard.operators.trigger_dagrun import TriggerDagRunOperator
from airflow.sdk import dag, task

from operators.storage.assets import OBSERVATIONS

DOC = """
### ingest_observation

The external data interface. Scheduled on the **`urgentflow_observations`** Asset: it runs when data
is pushed for an incident with `POST /urgentflow/incidents/{id}/data` (which stores, checksums and
catalogues the upload, then emits the Asset event).

1. **ingest**: for every triggering event, in order, re-reads the stored object (verified against the
   sha256 recorded at upload), validates it again against the incident as it is now, and applies it:
   a `weather` update replaces the incident's weather, a `perimeter` (GeoJSON Polygon) becomes the
   observed fire perimeter (its cells burn from the start of the next forecast); a `file` is kept as is.
   Each event is judged on its own: one that cannot be accepted (its incident was deleted, its object
   changed since it was announced, its data no longer fits the incident) is recorded in the catalog's
   `rejected_observations` with why and skipped; the others are applied. The run fails only when the
   batch cannot be judged (the catalog or the object store unreachable); its retry judges it again.
2. **reforecast**: for every changed incident that asked for `updates` and is still open, triggers
   `wildfire_forecast` with the incident's new state (run id `reforecast__<incident>__<observation>`,
   so a retry triggers nothing twice).
"""


@dag(
    dag_id="ingest_observation",
    schedule=[OBSERVATIONS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "use-case", "data"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=10)},
    # No max_active_runs cap: with a cap, Airflow 3.3 can strand events (apache/airflow#56050).
)
def ingest_observation() -> None:
    @task
    def ingest(triggering_asset_events: dict | None = None, ti: Any = None) -> list[dict]:
        from operators.catalog.catalog import Catalog
        from operators.ingest import apply_observations
        from operators.storage.hook import ObjectStoreHook

        events = [e.extra for e in (triggering_asset_events or {}).get(OBSERVATIONS, [])]
        catalog = Catalog()
        named = (e.get("incident_id") for e in events if isinstance(e, dict))
        for incident_id in dict.fromkeys(str(i) for i in named if isinstance(i, str) and i):
            if catalog.incident(incident_id) is not None:
                catalog.record_incident_run(incident_id, ti.dag_id, ti.run_id, "running")
                break  # a run belongs to one incident in the catalog: the first one of its batch
        result = apply_observations(events, ObjectStoreHook(), catalog, dag_id=ti.dag_id, run_id=ti.run_id)
        log = logging.getLogger(__name__)
        log.info("applied %d observation(s): %s", len(result["applied"]), result["applied"])
        if result["rejected"]:
            log.warning("rejected %d observation(s): %s", len(result["rejected"]), result["rejected"])
        return result["reforecasts"]

    TriggerDagRunOperator.partial(
        task_id="reforecast", trigger_dag_id="wildfire_forecast", skip_when_already_exists=True
    ).expand_kwargs(ingest())


ingest_observation()
