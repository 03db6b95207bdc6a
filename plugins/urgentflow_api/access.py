"""Per-record rights: a catalog row of a run, dataset, batch job or service belongs to the DAG that made it
(its ``dag_id``), so the caller sees or touches it only with the right on that DAG's runs — whatever
incident or order it hangs off. A row without a DAG needs the right on every DAG (``allowed(user, None,
...)``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from operators.incidents import DAG_OF_KIND
from urgentflow_api.airflow_api import Method, allowed


def permitted(user: Any, rows: Iterable[dict[str, Any]], method: Method = "GET") -> list[dict[str, Any]]:
    """The rows whose DAG ``user`` may ``method`` (GET read, PUT change), in order; one check per DAG."""
    verdicts: dict[str | None, bool] = {}
    kept = []
    for row in rows:
        dag_id = row["dag_id"]
        if dag_id not in verdicts:
            verdicts[dag_id] = allowed(user, dag_id, method)
        if verdicts[dag_id]:
            kept.append(row)
    return kept


def kind_allowed(user: Any, kind: str, method: Method) -> bool:
    """May ``user`` ``method`` the runs of the DAG that works incidents of ``kind`` (none for an unknown kind)?"""
    dag_id = DAG_OF_KIND.get(kind)
    return dag_id is not None and allowed(user, dag_id, method)
