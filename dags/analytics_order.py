"""analytics_order (after IVCAP): an order runs a registered tool image over catalog datasets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import Param, dag, task

from operators.orders import DAG_ID, MAX_INPUTS
from operators.tools.operators import RunToolOperator
from operators.tools.registry import TOOL_NAME

DOC = """
### analytics_order

An order (after IVCAP's orders): a **tool** of the registry (`include/tools.yaml`: image, argv,
parameter schema, limits), **input datasets** from the catalog and the tool's **parameters**.

1. **accept** checks the tool and its parameters against the registry and every input dataset against
   the catalog and the object store (the object exists and carries the catalogued sha256), and records
   the order `running` (a refused order is recorded `failed` with the reason; no container starts);
2. **run_tool** pulls the inputs (verified) and runs the tool's image without network, as nobody,
   inputs read-only at `/order/in`; a non-zero exit fails the order with the exit code and the tail of
   the tool's stderr;
3. **register_outputs** catalogues what the tool wrote to `/order/out` (stored under
   `orders/<order_id>/outputs/` with sha256s), each output derived from every input, and records the
   order `succeeded`, exit code 0.

The exit handler records how the run ended on the order, also when it failed before any task ran.
Place orders with `POST /urgentflow/orders` (which records the order `queued` and starts this DAG), or
trigger it with the same conf (`tool`, `input_dataset_ids`, `tool_params`).
"""


@dag(
    dag_id=DAG_ID,
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["urgentflow", "use-case", "orders"],
    doc_md=DOC,
    default_args={"owner": "urgentflow", "retries": 1, "retry_delay": timedelta(seconds=10)},
    params={
        "order_id": Param(
            "",
            type="string",
            pattern="^(ord-[0-9a-f]{12})?$",
            description="set by POST /orders; empty: the order is recorded by this run",
        ),
        "tool": Param("stats", type="string", pattern=TOOL_NAME, description="a tool of include/tools.yaml"),
        "input_dataset_ids": Param(
            [],
            type="array",
            items={"type": "integer", "minimum": 1},
            maxItems=MAX_INPUTS,
            description="catalog dataset ids the tool reads (at least one)",
        ),
        "tool_params": Param({}, type="object", description="the tool's parameters (its params_schema)"),
    },
    render_template_as_native_obj=True,
    dagrun_timeout=timedelta(hours=2),
    max_active_runs=16,
)
def analytics_order() -> None:
    @task
    def accept(params: dict | None = None, ti: Any = None) -> dict:
        """Validate the order, resolve its inputs, record it running (or failed, with the reason)."""
        from airflow.sdk.exceptions import AirflowFailException
        from pydantic import ValidationError

        from operators.catalog.orders import OrderCatalog
        from operators.orders import OrderRequest, new_order_id
        from operators.storage.hook import ObjectStoreHook
        from operators.tools.datasets import InputProblem, resolve_inputs
        from operators.tools.registry import load_registry

        assert params is not None
        orders = OrderCatalog()
        order_id = params["order_id"] or orders.order_of_run(ti.dag_id, ti.run_id) or new_order_id()
        request, problem = None, ""
        try:
            request = OrderRequest(
                tool=params["tool"],
                input_dataset_ids=params["input_dataset_ids"],
                tool_params=params["tool_params"],
            )
        except ValidationError as exc:
            problem = "; ".join(
                f"{'.'.join(str(p) for p in e['loc'])}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
        tool = load_registry().get(params["tool"])
        state = orders.claim_order(
            order_id,
            tool=params["tool"],
            image=tool.image if tool else None,
            params=params["tool_params"],
            input_ids=params["input_dataset_ids"],
            dag_id=ti.dag_id,
            run_id=ti.run_id,
        )
        if state is None:
            raise AirflowFailException(f"order {order_id} belongs to another run: not touched")
        if state == "cancelled":
            raise AirflowFailException(f"order {order_id} was cancelled")
        inputs: list[dict] = []
        if request is not None:
            try:
                inputs = resolve_inputs(orders, ObjectStoreHook(), request.input_dataset_ids)
            except InputProblem as exc:
                problem = str(exc)
        if problem:
            orders.finish_order(order_id, "failed", reason=f"order refused: {problem}")
            raise AirflowFailException(f"order {order_id} refused: {problem}")
        assert request is not None
        return {
            "order_id": order_id,
            "tool": request.tool,
            "tool_params": request.tool_params,
            "inputs": inputs,
        }

    accepted = accept()
    ran = RunToolOperator(
        task_id="run_tool",
        order="{{ ti.xcom_pull(task_ids='accept') }}",
        execution_timeout=timedelta(minutes=30),
    )

    @task
    def register_outputs(accepted: dict, ran: dict, ti: Any = None) -> dict:
        """Catalogue every output, derived from every input; the order succeeded with exit code 0."""
        from operators.catalog.catalog import Producer
        from operators.catalog.orders import OrderCatalog
        from operators.storage.hook import ChecksumMismatch, ObjectStoreHook

        orders, store = OrderCatalog(), ObjectStoreHook()
        producer = Producer.of(ti, job_id=ran["container_id"][:12])
        input_ids = [i["dataset_id"] for i in accepted["inputs"]]
        output_ids = []
        for written in ran["outputs"]:
            stored = store.stat(written["key"])
            if stored.sha256 != written["sha256"]:
                raise ChecksumMismatch(
                    f"{written['key']}: sha256 {stored.sha256} != written {written['sha256']}"
                )
            output_ids.append(orders.record_stored(stored, producer, inputs=input_ids))
        orders.finish_order(
            accepted["order_id"], "succeeded", exit_code=ran["exit_code"], output_ids=output_ids
        )
        return {"order_id": accepted["order_id"], "output_dataset_ids": output_ids}

    accepted >> ran
    register_outputs(accepted, ran.output)


analytics_order()
