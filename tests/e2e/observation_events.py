"""Every ``urgentflow_observations`` Asset event a test creates is consumed before the test ends.

An ingest_observation run takes every event since the previous run (not only the queued ones), so an
event a test leaves behind rides along in a later test's run; deleting the queue entry, or the run that
consumed it, does not remove it from that window. So a test waits until a finished run consumed each
of its events, before it deletes the incidents those events name. An event announced while
``ingest_observation`` was paused queues no run (Airflow ignores events for a paused DAG), so when the
DAG was paused the helper announces one more event after unpausing it, and that run takes them all.
"""

from __future__ import annotations

import time
from datetime import datetime

from airflow_client import AirflowClient

OBSERVATIONS_URI = "x-urgentflow://observations"
INGEST = "ingest_observation"
FINISHED = ("success", "failed")


def consume_observation_events(airflow: AirflowClient, since: datetime, timeout: float = 300) -> set[str]:
    """Wait until every observation event since ``since`` was consumed by a finished ingest_observation
    run (the DAG is unpaused meanwhile, and paused again if it was); returns those runs."""
    assets = airflow.request("GET", "/api/v2/assets", params={"uri_pattern": OBSERVATIONS_URI})
    found = [a["id"] for a in assets["assets"] if a["uri"] == OBSERVATIONS_URI]
    if not found:
        return set()
    was_paused = bool(airflow.wait_for_dag(INGEST, timeout=120)["is_paused"])
    airflow.unpause(INGEST)
    if was_paused:
        # Airflow queues no run for an event of a paused DAG; the next run takes every event since the
        # previous run, so one event while unpaused flushes them (ingest rejects it: not an observation)
        airflow.request(
            "POST", "/api/v2/assets/events", json={"asset_id": found[0], "extra": {"flush": "tests"}}
        )
    try:
        deadline = time.monotonic() + timeout
        while True:
            events = airflow._paged(
                "/api/v2/assets/events",
                "asset_events",
                {"asset_id": found[0], "timestamp_gte": since.isoformat()},
            )
            runs = [[r for r in e["created_dagruns"] if r["dag_id"] == INGEST] for e in events]
            pending = [
                e["id"]
                for e, by in zip(events, runs, strict=True)
                if not any(r["state"] in FINISHED for r in by)
            ]
            if not pending:
                return {r["run_id"] for by in runs for r in by}
            assert time.monotonic() < deadline, f"observation events never consumed by {INGEST}: {pending}"
            time.sleep(2)
    finally:
        if was_paused:
            airflow.request("PATCH", f"/api/v2/dags/{INGEST}", json={"is_paused": True})
