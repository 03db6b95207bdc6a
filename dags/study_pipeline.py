"""study_pipeline (after oSPARC): container steps passing data through the object store, then a notebook."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pendulum
from airflow.sdk import Param, dag

from operators.services.operators import StartServiceOperator, StopServiceOperator
from operators.services.session import WaitForSessionEndOperator
from operators.services.steps import ContainerStepOperator
from operators.storage.keys import key_segment

DOC = """
### study_pipeline

A study as a pipeline of computational services (after oSPARC): each step is a container
(`urgentflow/base:1` running `include/study`, through the docker provider's `DockerOperator`) that
fetches its inputs from and stores its outputs in the object store itself, through presigned URLs
(the worker never carries the bytes). Every output is catalogued with its sha256, its producer and
its lineage, and linked to `incident_id` when given.

1. **generate**: a steady 2-D heat-conduction problem on the unit square (`grid_size` nodes a side,
   1-3 Gaussian heat sources of peak up to `source_strength`, boundary temperatures, from `seed`)
   → `problem.json`;
2. **solve**: successive over-relaxation until the relative residual is below `tolerance` (at most
   `max_iterations`) → `field.json`, `residuals.csv`;
3. **postprocess**: temperature statistics, hot spot, residual and discrete energy balance recomputed
   → `report.json`, `temperature.png`;
4. **notebook**: `urgentflow/notebook:1` opened on the run's results (`/data`), its URL on the task's
   "Open service" link. The run stays open, deferred, until the user leaves (no keep-alive
   `POST /urgentflow/services/{id}/keepalive` for `keepalive_seconds`) or `session_minutes` pass;
   then the teardown exports the notes and closes it (also when the run fails).

Results: `studies/<run>/{generate,solve,postprocess}/` in the object store. `fail_step` makes that
step's container fail on purpose after storing its first output (the step must leave nothing behind).
"""

IMAGE = "urgentflow/base:1"
STUDY_CODE = str(Path(__file__).resolve().parents[1] / "include" / "study")
STUDY = ["python3", "-m", "study"]
PREFIX = "studies/{{ key_segment(run_id) }}"


@dag(
    dag_id="study_pipeline",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "use-case", "services"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=5)},
    params={
        "grid_size": Param(32, type="integer", minimum=4, maximum=128, description="interior nodes a side"),
        "source_strength": Param(
            100.0, type="number", minimum=0, maximum=1e5, description="peak heat source"
        ),
        "tolerance": Param(
            1e-6,
            type="number",
            exclusiveMinimum=0,
            minimum=1e-12,
            maximum=0.1,
            description="relative residual",
        ),
        "max_iterations": Param(20000, type="integer", minimum=1, maximum=1_000_000),
        "seed": Param(0, type="integer", minimum=0, maximum=2**31 - 1),
        "session_minutes": Param(
            30, type="integer", minimum=1, maximum=1440, description="the notebook closes after this at most"
        ),
        "keepalive_seconds": Param(
            300,
            type="integer",
            minimum=5,
            maximum=86400,
            description="the user left after this without a keep-alive",
        ),
        "incident_id": Param(
            "", type="string", pattern="^(inc-[0-9a-f]{12})?$", description="catalog rows link to it when set"
        ),
        "fail_step": Param(
            "",
            type="string",
            enum=["", "generate", "solve", "postprocess"],
            description="fail this step on purpose",
        ),
    },
    user_defined_macros={"key_segment": key_segment},
    dagrun_timeout=timedelta(hours=25),
)
def study_pipeline() -> None:
    def step(name: str, args: list[str], outputs: dict[str, str], inputs: list) -> ContainerStepOperator:
        return ContainerStepOperator(
            task_id=name,
            image=IMAGE,
            command=[*STUDY, name, *args],
            environment={
                "PYTHONPATH": "/opt",
                "PYTHONDONTWRITEBYTECODE": "1",
                "STUDY_FAIL_STEP": "{{ params.fail_step }}",
            },
            mounts=[{"target": "/opt/study", "source": STUDY_CODE, "type": "bind", "read_only": True}],
            user="65534:65534",
            network_mode="host",  # the store's presigned URLs point at the Docker host's loopback
            cpus=1.0,
            mem_limit="256m",
            inputs=inputs,
            outputs=outputs,
            output_prefix=f"{PREFIX}/{name}",
            incident_id="{{ params.incident_id }}",
        )

    generate = step(
        "generate",
        [
            "--grid-size",
            "{{ params.grid_size }}",
            "--source-strength",
            "{{ params.source_strength }}",
            "--seed",
            "{{ params.seed }}",
        ],
        {"problem.json": "application/json"},
        [],
    )
    solve = step(
        "solve",
        ["--tolerance", "{{ params.tolerance }}", "--max-iterations", "{{ params.max_iterations }}"],
        {"field.json": "application/json", "residuals.csv": "text/csv"},
        [generate.output],
    )
    postprocess = step(
        "postprocess",
        [],
        {"report.json": "application/json", "temperature.png": "image/png"},
        [generate.output, solve.output],
    )
    notebook = StartServiceOperator(
        task_id="open_notebook",
        image="urgentflow/notebook:1",
        container_port=8888,
        readiness_path="/healthz",
        data_prefix=PREFIX,
        ttl_minutes="{{ params.session_minutes }}",
        keepalive_seconds="{{ params.keepalive_seconds }}",
        cpus=0.5,
        memory_mb=128,
    )
    session = WaitForSessionEndOperator(
        task_id="session", service=notebook.output, keepalive_seconds="{{ params.keepalive_seconds }}"
    )
    close = StopServiceOperator(
        task_id="close_notebook", service_task_id="open_notebook", export_paths=["/work"]
    )
    postprocess >> notebook >> session >> close.as_teardown(setups=notebook)


study_pipeline()
