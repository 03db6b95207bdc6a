"""hpc_drill: exercise one HPC machine end to end with an ensemble of small real batch jobs."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from operators.hpc.operators import BatchJobOperator
from operators.machines.operators import SelectMachineOperator
from operators.storage.assets import PUBLISHED
from operators.storage.operators import StageFromMachineOperator, StageToMachineOperator

DOC = """
### hpc_drill

Checks a machine's whole data and batch path the way the use cases use it: the machine is
**selected** (`machine`, a name from `include/machines.yaml`, is checked to be up and able to take the
jobs; `auto` lets `SelectMachineOperator` choose among all machines), an input object is written to
the object store and catalogued, **staged** to the machine (it fetches it itself), a **mapped ensemble** of `members` batch
jobs is submitted with `BatchJobOperator` straight from the triggerer (no worker per member; the
members' jobs go out together, a few remote commands for all) and watched by the machine's shared
poller there, one task **publishes** every member's output back to the store and the catalog (lineage:
input → output) and announces them in one `urgentflow_published` Asset event (which starts
`verify_published`), then a summary.

Each member hashes the input into `member-<n>.out`, runs for `seconds` and exits 0; members listed in
`fail_members` exit 3 instead (a failure drill: the task fails naming state FAILED, exit code 3 and the
last lines of stderr). Use it after maintenance, or to measure a machine.
"""

MACHINE = "{{ ti.xcom_pull(task_ids='select_machine')['machine'] }}"
PARTITION = "{{ ti.xcom_pull(task_ids='select_machine')['partition'] }}"
STAGED_INPUT = "{{ ti.xcom_pull(task_ids='stage_input')[0]['path'] }}"

MEMBER = (
    '{ echo "member $1 on $(hostname)"; sha256sum "$4"; } > "member-$1.out"; sleep "$2"; '
    'if [ "$3" != 0 ]; then echo "member $1 drill failure" >&2; fi; exit "$3"'
)


def drill(dag_id: str, doc: str, members_from_triggerer: bool) -> None:
    """The drill DAG; ``members_from_triggerer`` False submits its members from workers (the path a task
    takes when the triggerer cannot work out its arguments, e.g. an XCom of a mapped upstream)."""

    @dag(
        dag_id=dag_id,
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        tags=["urgentflow", "hpc", "operations"],
        doc_md=doc,
        default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=5)},
        params={
            "machine": Param(
                "alpha",
                type="string",
                pattern="^(auto|[A-Za-z0-9_-]{1,64})$",
                description="a machine of the catalog, or auto (the selection policy chooses)",
            ),
            "members": Param(4, type="integer", minimum=1, maximum=500),
            "seconds": Param(
                2, type="integer", minimum=0, maximum=3600, description="run time of each member"
            ),
            "walltime_minutes": Param(5, type="integer", minimum=1, maximum=1440),
            "held_timeout_minutes": Param(
                30,
                type="number",
                exclusiveMinimum=0,
                maximum=10080,
                description="a member on a hold this long is cancelled and submitted afresh (at most the machine's)",
            ),
            "fail_members": Param([], type="array", items={"type": "integer", "minimum": 0}),
            "timeout_resubmit_factor": Param(None, type=["null", "number"], minimum=1.1, maximum=10),
            "max_walltime_minutes": Param(None, type=["null", "integer"], minimum=1, maximum=1440),
        },
        render_template_as_native_obj=True,
        max_active_runs=4,
    )
    def hpc_drill() -> None:
        select = SelectMachineOperator(
            task_id="select_machine",
            cores=1,
            walltime_minutes="{{ params.walltime_minutes }}",
            machines="{{ none if params.machine == 'auto' else [params.machine] }}",
        )

        @task
        def make_input(dag_run: Any = None, ti: Any = None) -> dict:
            """A small input object, catalogued as a dataset this run produced."""
            import io

            from operators.catalog.catalog import Catalog, Producer
            from operators.storage.hook import ObjectStoreHook
            from operators.storage.keys import key_segment

            prefix = f"drill/{key_segment(dag_run.run_id)}"
            stored = ObjectStoreHook().put_stream(
                f"{prefix}/input.txt",
                io.BytesIO(f"hpc_drill input of {dag_run.run_id}\n".encode()),
                "text/plain",
            )
            dataset_id = Catalog().record_stored(stored, Producer.of(ti))
            return {"key": stored.key, "prefix": prefix, "dataset_id": dataset_id}

        drill_input = make_input()
        staged = StageToMachineOperator(task_id="stage_input", machine=MACHINE, keys=[drill_input["key"]])
        select >> staged

        # Needs only the params: it runs beside selection and staging, not after them (the staged path is
        # a template each member renders).
        @task
        def member_commands(params: dict | None = None) -> list[list[str]]:
            assert params is not None
            failing = set(params["fail_members"])
            return [
                [
                    "bash",
                    "-c",
                    MEMBER,
                    "member",
                    str(i),
                    str(params["seconds"]),
                    "3" if i in failing else "0",
                    STAGED_INPUT,
                ]
                for i in range(params["members"])
            ]

        members = BatchJobOperator.partial(
            task_id="member",
            machine=MACHINE,
            partition=PARTITION,
            walltime_minutes="{{ params.walltime_minutes }}",
            timeout_resubmit_factor="{{ params.timeout_resubmit_factor }}",
            max_walltime_minutes="{{ params.max_walltime_minutes }}",
            held_timeout_minutes="{{ params.held_timeout_minutes }}",
            poll_interval=2.0,
            start_from_trigger=members_from_triggerer,
        ).expand(command=member_commands())
        staged >> members

        # ONE task publishes every member's output and emits ONE Asset event for the ensemble.
        StageFromMachineOperator(
            task_id="publish",
            jobs=members.output,
            key_prefix=drill_input["prefix"],
            pattern="member-*.out",
            input_dataset_ids=[drill_input["dataset_id"]],
            outlets=[PUBLISHED],
        )

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


drill("hpc_drill", DOC, members_from_triggerer=True)
drill(
    "hpc_drill_worker",
    DOC + "\n**This variant** submits its members from workers (`start_from_trigger=False`): the path a\n"
    "`BatchJobOperator` task takes when the triggerer cannot work out its arguments.\n",
    members_from_triggerer=False,
)
