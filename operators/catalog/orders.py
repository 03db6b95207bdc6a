"""Orders in the catalog (after IVCAP): a tool image run over input datasets, and how it ended.

``OrderCatalog`` is the ``Catalog`` (same ``catalog_db`` connection, same idempotent writes) plus the
``orders`` table of migration 005. States: ``queued`` (recorded, run not started) -> ``running`` ->
``succeeded`` | ``failed``; ``cancelled`` is final. The first failure reason recorded is kept: the
task that saw the tool fail knows more than the scheduler's later "task_failure".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from operators.catalog.catalog import Catalog

MAX_REASON = 2000
_COLUMNS = (
    "id, tool, image, params, input_ids, output_ids, state, exit_code, reason, dag_id, run_id,"
    " created_at, updated_at, started_at, ended_at"
)


class OrderCatalog(Catalog):
    def create_order(
        self,
        order_id: str,
        *,
        tool: str,
        image: str | None,
        params: dict[str, Any],
        input_ids: Sequence[int],
        dag_id: str,
        run_id: str,
    ) -> None:
        """A new ``queued`` order; raises if the id or the run is taken (ids are generated: a bug)."""
        self._one(
            "INSERT INTO orders (id, tool, image, params, input_ids, dag_id, run_id)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (order_id, tool, image, json.dumps(params), list(input_ids), dag_id, run_id),
        )

    def delete_order(self, order_id: str) -> None:
        """Undo ``create_order`` when its DAG run could not be created (both or neither)."""
        self._one("DELETE FROM orders WHERE id = %s RETURNING id", (order_id,))

    def claim_order(
        self,
        order_id: str,
        *,
        tool: str,
        image: str | None,
        params: dict[str, Any],
        input_ids: Sequence[int],
        dag_id: str,
        run_id: str,
    ) -> str | None:
        """Record the order as run by (dag_id, run_id) and ``running`` (a new row if there is none).

        Returns the order's state afterwards (``cancelled`` stays), or None when the order belongs to
        another run (which is left untouched). A retried task claims its own order again.
        """
        row = self._one(
            "INSERT INTO orders (id, tool, image, params, input_ids, dag_id, run_id, state, started_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, 'running', now())"
            " ON CONFLICT (id) DO UPDATE SET tool = EXCLUDED.tool, image = EXCLUDED.image,"
            " params = EXCLUDED.params, input_ids = EXCLUDED.input_ids, dag_id = EXCLUDED.dag_id,"
            " run_id = EXCLUDED.run_id,"
            " state = CASE WHEN orders.state = 'cancelled' THEN 'cancelled' ELSE 'running' END,"
            " exit_code = NULL, reason = '', output_ids = '{}', ended_at = NULL,"
            " started_at = COALESCE(orders.started_at, now()), updated_at = now()"
            " WHERE orders.run_id IS NULL OR (orders.dag_id = EXCLUDED.dag_id AND orders.run_id = EXCLUDED.run_id)"
            " RETURNING state",
            (order_id, tool, image, json.dumps(params), list(input_ids), dag_id, run_id),
        )
        return str(row[0]) if row else None

    def mark_order_running(self, order_id: str, started_at: Any = None) -> None:
        """A queued order's run started (the exit handler); an order in any other state is left as is."""
        self._one(
            "UPDATE orders SET state = 'running', started_at = COALESCE(started_at, %s, now()),"
            " updated_at = now() WHERE id = %s AND state = 'queued' RETURNING 1",
            (started_at, order_id),
        )

    def finish_order(
        self,
        order_id: str,
        state: str,
        *,
        exit_code: int | None = None,
        reason: str = "",
        output_ids: Sequence[int] | None = None,
        ended_at: Any = None,
    ) -> bool:
        """End the order (``succeeded`` or ``failed``); idempotent, ``cancelled`` is final, the first
        failure reason and exit code recorded are kept. False when no such order can change."""
        if state not in ("succeeded", "failed"):
            raise ValueError(f"an order ends succeeded or failed, not {state!r}")
        row = self._one(
            "UPDATE orders SET state = %s, exit_code = COALESCE(exit_code, %s),"
            " reason = CASE WHEN %s::text = 'failed' THEN COALESCE(NULLIF(reason, ''), %s) ELSE '' END,"
            " output_ids = COALESCE(%s, output_ids), ended_at = COALESCE(%s, now()), updated_at = now()"
            " WHERE id = %s AND state <> 'cancelled' RETURNING 1",
            (
                state,
                exit_code,
                state,
                reason[:MAX_REASON],
                list(output_ids) if output_ids is not None else None,
                ended_at,
                order_id,
            ),
        )
        return row is not None

    def order(self, order_id: str) -> dict[str, Any] | None:
        # the column list is a constant of this module; values are bound parameters
        rows = self._all(f"SELECT {_COLUMNS} FROM orders WHERE id = %s", (order_id,))  # noqa: S608
        return rows[0] if rows else None

    def orders(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first."""
        return self._all(f"SELECT {_COLUMNS} FROM orders ORDER BY created_at DESC, id LIMIT %s", (limit,))  # noqa: S608

    def order_of_run(self, dag_id: str, run_id: str) -> str | None:
        rows = self._all("SELECT id FROM orders WHERE dag_id = %s AND run_id = %s", (dag_id, run_id))
        return str(rows[0]["id"]) if rows else None
