"""quickstart: a small, real example pipeline that exercises the whole runtime.

It generates a synthetic terrain from a seed, waits on the triggerer (a deferred sensor), runs a
mapped ensemble of terrain-smoothing members (one per seed offset) and writes a JSON summary. It is the
main DAG of ``make demo`` until the flagship ``wildfire_forecast`` lands.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.providers.standard.sensors.time_delta import WaitSensor
from airflow.sdk import Param, dag, get_current_context, task

DOC = """
### quickstart

A small real pipeline: **generate** a synthetic terrain (numpy, reproducible from `seed`),
**wait** two seconds on the triggerer (deferred, no worker held), **smooth** it in a mapped ensemble
(one member per seed offset, `members` of them) and **summarize** the members into
`results/quickstart/<run_id>/summary.json` under the urgentflow home directory.

Trigger it from the UI (form) or the REST API with conf `{"members": 3, "size": 64, "seed": 7}`.
"""


def _results_dir(run_id: str) -> Path:
    home = os.environ.get("URGENTFLOW_HOME", "/var/lib/urgentflow")
    safe_run = "".join(c if c.isalnum() or c in "-_.+" else "_" for c in run_id)
    path = Path(home) / "results" / "quickstart" / safe_run
    path.mkdir(parents=True, exist_ok=True)
    return path


@dag(
    dag_id="quickstart",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "example"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=10)},
    params={
        "members": Param(3, type="integer", minimum=1, maximum=16, description="ensemble members"),
        "size": Param(64, type="integer", minimum=8, maximum=512, description="grid cells per side"),
        "seed": Param(7, type="integer", minimum=0, maximum=2**31 - 1, description="random seed"),
    },
    render_template_as_native_obj=True,
)
def quickstart() -> None:
    @task
    def generate(params: dict) -> str:
        import numpy as np

        rng = np.random.default_rng(params["seed"])
        size = params["size"]
        terrain = rng.normal(size=(size, size)).cumsum(axis=0).cumsum(axis=1)
        path = _results_dir(get_current_context()["run_id"]) / "terrain.npy"
        np.save(path, terrain)
        return str(path)

    @task
    def member_offsets(params: dict) -> list[int]:
        return list(range(params["members"]))

    @task
    def smooth(terrain_path: str, offset: int) -> dict:
        import numpy as np

        terrain = np.load(terrain_path)
        # Diffuse the terrain: each member runs a different number of explicit Laplacian steps.
        steps = 5 * (offset + 1)
        field = terrain.copy()
        for _ in range(steps):
            padded = np.pad(field, 1, mode="edge")
            field = field + 0.2 * (
                padded[:-2, 1:-1] + padded[2:, 1:-1] + padded[1:-1, :-2] + padded[1:-1, 2:] - 4 * field
            )
        return {
            "member": offset,
            "steps": steps,
            "mean": float(field.mean()),
            "std": float(field.std()),
            "roughness": float(np.abs(np.diff(field, axis=0)).mean()),
        }

    @task
    def summarize(members: list[dict]) -> str:
        ordered = sorted(members, key=lambda m: m["member"])
        path = _results_dir(get_current_context()["run_id"]) / "summary.json"
        path.write_text(json.dumps({"members": ordered}, indent=2))
        return str(path)

    terrain = generate()
    wait = WaitSensor(task_id="wait_on_triggerer", time_to_wait=timedelta(seconds=2), deferrable=True)
    results = smooth.partial(terrain_path=terrain).expand(offset=member_offsets())
    terrain >> wait >> results
    summarize(results)


quickstart()
