"""service_drill: open a service container for a run, use it, close it (also when the run fails)."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from operators.services.operators import StartServiceOperator, StopServiceOperator

DOC = """
### service_drill

Checks the service-container path end to end: **start** the result viewer (`urgentflow/viewer:1`,
serving a directory over HTTP) or the notebook (`urgentflow/notebook:1`) for this run, **use** it (an
HTTP request to its URL, and a note written into the notebook; the task's "Open service" link shows
the same URL), then the **teardown**
stops and removes it — also when the run fails (`fail: true` makes the use step fail on purpose) —
exporting the notebook's notes to the object store first. Services left behind are closed by
`service_reaper` (TTL `ttl_minutes`, keep-alive, finished run).
"""

IMAGES = {
    "viewer": ("urgentflow/viewer:1", 8000, "/"),
    "notebook": ("urgentflow/notebook:1", 8888, "/healthz"),
}


@dag(
    dag_id="service_drill",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "services", "operations"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=5)},
    params={
        "service": Param("viewer", enum=sorted(IMAGES), description="which service to open"),
        "hold_seconds": Param(
            0, type="integer", minimum=0, maximum=3600, description="keep it open this long"
        ),
        "ttl_minutes": Param(30, type="integer", minimum=1, maximum=1440),
        "fail": Param(False, type="boolean", description="fail the use step (the teardown must still run)"),
    },
    render_template_as_native_obj=True,
)
def service_drill() -> None:
    @task
    def choose(params: dict | None = None) -> dict:
        assert params is not None
        image, port, path = IMAGES[params["service"]]
        return {"image": image, "port": port, "path": path}

    chosen = choose()
    start = StartServiceOperator(
        task_id="start_service",
        image=chosen["image"],
        container_port=chosen["port"],
        readiness_path=chosen["path"],
        ttl_minutes="{{ params.ttl_minutes }}",
        cpus=0.5,
        memory_mb=128,
    )

    @task
    def use(service: dict, params: dict | None = None) -> dict:
        import time
        import urllib.request

        assert params is not None
        with urllib.request.urlopen(service["url"], timeout=10) as response:  # noqa: S310 (our own URL)
            status = response.status
        if params["service"] == "notebook":  # leave a note: the teardown exports it to the object store
            note = urllib.request.Request(  # noqa: S310
                service["url"].rstrip("/") + "/notes",
                data=b"service_drill was here\n",
                headers={"Content-Type": "text/plain"},
                method="POST",
            )
            urllib.request.urlopen(note, timeout=10).close()  # noqa: S310
        time.sleep(params["hold_seconds"])
        if params["fail"]:
            raise RuntimeError(f"failing on purpose (fail=true); the service answered {status}")
        return {"url": service["url"], "status": status}

    stop = StopServiceOperator(
        task_id="stop_service",
        service_task_id="start_service",
        export_paths="{{ ['/work/notes.md'] if params.service == 'notebook' else [] }}",
    )
    chosen >> start >> use(start.output) >> stop.as_teardown(setups=start)


service_drill()
