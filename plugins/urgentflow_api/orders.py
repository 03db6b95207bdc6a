"""Orders (IVCAP-style): ``POST /orders`` (a ``queued`` order row and its analytics_order DAG run, both or
neither), ``GET /orders``, ``GET /orders/{id}`` (state, exit code, reason, inputs, outputs with download
links). The run is created in process through Airflow's own code (``airflow_api``) as the caller, so Airflow's
checks (permissions, the DAG's params schema) apply as for ``POST /api/v2/dags/{id}/dagRuns``. The run
reads its inputs with the DAG's rights, so an order may name only datasets the caller may read (the
right to read runs of the DAG that made each), and an order shows only those of its datasets.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from airflow.api_fastapi.core_api.security import GetUserDep
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from operators.catalog.orders import OrderCatalog
from operators.orders import DAG_ID, ORDER_ID_PATTERN, OrderRequest, new_order_id, run_id_of
from operators.tools.registry import get_tool
from urgentflow_api.access import permitted
from urgentflow_api.airflow_api import allowed, trigger_run

router = APIRouter()
ORDER_ID = re.compile(ORDER_ID_PATTERN)


@router.post(
    "/orders",
    status_code=201,
    summary="Place an order: a tool of the registry over catalog datasets; it is recorded and its run starts",
    responses={
        422: {"description": "invalid order (field errors), or an input the user may not read"},
        403: {"description": "no right"},
    },
)
def create_order(order: OrderRequest, request: Request, user: GetUserDep) -> JSONResponse:
    if not allowed(user, DAG_ID, "POST"):
        raise HTTPException(status_code=403, detail=f"you may not trigger {DAG_ID}")
    orders = OrderCatalog()
    readable = _readable_datasets(orders, user, order.input_dataset_ids)
    refused = [i for i in order.input_dataset_ids if i not in readable]
    if refused:  # the run would read them with the DAG's rights, not the caller's
        raise HTTPException(
            status_code=422,
            detail=[{"loc": ["body", "input_dataset_ids"], "msg": f"no dataset you may read: {refused}"}],
        )
    order_id = new_order_id()
    run_id = run_id_of(order_id)
    orders.create_order(
        order_id,
        tool=order.tool,
        image=get_tool(order.tool).image,
        params=order.tool_params,
        input_ids=order.input_dataset_ids,
        dag_id=DAG_ID,
        run_id=run_id,
    )
    trigger_run(
        request,
        user,
        DAG_ID,
        {"dag_run_id": run_id, "logical_date": None, "conf": {"order_id": order_id, **order.model_dump()}},
        undo=lambda: orders.delete_order(order_id),
    )
    return JSONResponse(
        status_code=201, content={"order_id": order_id, "dag_id": DAG_ID, "run_id": run_id, "state": "queued"}
    )


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def _summary(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_id": row["id"],
        "tool": row["tool"],
        "state": row["state"],
        "exit_code": row["exit_code"],
        "dag_id": row["dag_id"],
        "run_id": row["run_id"],
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
    }


@router.get("/orders", summary="Orders, newest first (of the DAGs the user may read)")
def list_orders(user: GetUserDep, limit: int = 100) -> list[dict[str, Any]]:
    rows = OrderCatalog().orders(max(1, min(limit, 1000)))
    return [_summary(r) for r in rows if allowed(user, r["dag_id"] or DAG_ID, "GET")]


def _readable_datasets(orders: OrderCatalog, user: Any, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    """The datasets among ``ids`` that exist and that ``user`` may read (by the DAG that made each), by id."""
    rows = [row for dataset_id in ids if (row := orders.dataset(dataset_id)) is not None]
    return {row["id"]: row for row in permitted(user, rows)}


def _datasets(orders: OrderCatalog, user: Any, ids: Sequence[int], store: Any = None) -> list[dict[str, Any]]:
    readable = _readable_datasets(orders, user, ids)
    found = []
    for dataset_id in ids:
        row = readable.get(dataset_id)
        if row is None:  # gone, or made by a DAG the user may not read: the same answer (no probing)
            found.append({"dataset_id": dataset_id, "missing": True})
            continue
        item = {"dataset_id": row["id"], "key": row["key"], "size": row["size"], "sha256": row["sha256"]}
        if store is not None:
            item["download"] = store.presigned_get(row["key"], timedelta(hours=1), bucket=row["bucket"])
        found.append(item)
    return found


@router.get("/orders/{order_id}", summary="One order: state, exit code, reason, inputs, outputs with links")
def get_order(order_id: str, user: GetUserDep) -> dict[str, Any]:
    orders = OrderCatalog()
    row = orders.order(order_id) if ORDER_ID.match(order_id) else None
    if row is None or not allowed(user, row["dag_id"] or DAG_ID, "GET"):
        raise HTTPException(status_code=404, detail=f"no order {order_id!r}")
    from operators.storage.hook import ObjectStoreHook

    return {
        **_summary(row),
        "image": row["image"],
        "tool_params": row["params"],
        "reason": row["reason"],
        "started_at": _iso(row["started_at"]),
        "ended_at": _iso(row["ended_at"]),
        "inputs": _datasets(orders, user, row["input_ids"]),
        "outputs": _datasets(orders, user, row["output_ids"], ObjectStoreHook()),
    }
