"""hpc_drill: exercise one HPC machine end to end with an ensemble of small real batch jobs."""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import Param, dag, task

from operators.hpc.operators import BatchJobOperator

DOC = """
### hpc_drill

Checks a machine's whole batch path the way the use cases use it: a **mapped ensemble** of
`members` batch jobs submitted with `BatchJobOperator` to `machine` (a name from
`include/machines.yaml`), watched by the machine's shared poller in the triggerer, then a summary.

Each member runs `bash` for `seconds`, prints its host and member number and exits 0; members
listed in `fail_members` exit 3 instead (a failure drill: the task fails naming state FAILED, exit
code 3 and the last lines of stderr). Use it after maintenance, or to measure a machine.
"""

MEMBER = 'echo "member $1 on $(hostname) started"; sleep "$2"; if [ "$3" != 0 ]; then echo "member $1 drill failure" >&2; fi; exit "$3"'


@dag(
    dag_id="hpc_drill",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "hpc", "operations"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=5)},
    params={
        "machine": Param(
            "alpha", type="string", pattern="^[A-Za-z0-9_-]{1,64}$", description="catalog machine"
        ),
        "members": Param(4, type="integer", minimum=1, maximum=500),
        "seconds": Param(2, type="integer", minimum=0, maximum=3600, description="run time of each member"),
        "walltime_minutes": Param(5, type="integer", minimum=1, maximum=1440),
        "fail_members": Param([], type="array", items={"type": "integer", "minimum": 0}),
        "timeout_resubmit_factor": Param(None, type=["null", "number"], minimum=1.1, maximum=10),
        "max_walltime_minutes": Param(None, type=["null", "integer"], minimum=1, maximum=1440),
    },
    render_template_as_native_obj=True,
    max_active_runs=4,
)
def hpc_drill() -> None:
    @task
    def member_commands(params: dict | None = None) -> list[list[str]]:
        assert params is not None
        failing = set(params["fail_members"])
        return [
            ["bash", "-c", MEMBER, "member", str(i), str(params["seconds"]), "3" if i in failing else "0"]
            for i in range(params["members"])
        ]

    members = BatchJobOperator.partial(
        task_id="member",
        machine="{{ params.machine }}",
        walltime_minutes="{{ params.walltime_minutes }}",
        timeout_resubmit_factor="{{ params.timeout_resubmit_factor }}",
        max_walltime_minutes="{{ params.max_walltime_minutes }}",
        poll_interval=2.0,
    ).expand(command=member_commands())

    @task
    def summarize(jobs: list[dict]) -> dict:
        return {
            "members": len(jobs),
            "machine": jobs[0]["machine"] if jobs else None,
            "states": sorted({j["state"] for j in jobs}),
            "reattached": sum(1 for j in jobs if j.get("reattached")),
        }

    summarize(members.output)


hpc_drill()
