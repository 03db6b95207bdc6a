"""DAG integrity: every DAG in dags/ imports quickly, offline, and carries what operators need."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from airflow.dag_processing.dagbag import DagBag

DAGS_DIR = Path(__file__).resolve().parents[2] / "dags"
PARSE_BUDGET_S = 1.0


class NetworkAtParseTime(AssertionError):
    pass


@pytest.fixture(scope="module")
def dagbag() -> Iterator[DagBag]:
    """Load dags/ with the network cut off: any connect attempt at parse time is an error."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise NetworkAtParseTime(f"network access at DAG parse time: {args!r}")

    patch = pytest.MonkeyPatch()
    patch.setattr(socket.socket, "connect", refuse)
    patch.setattr(socket.socket, "connect_ex", refuse)
    patch.setattr(socket, "create_connection", refuse)
    patch.setattr(socket, "getaddrinfo", refuse)
    try:
        yield DagBag(dag_folder=str(DAGS_DIR))
    finally:
        patch.undo()


def test_no_import_errors(dagbag: DagBag) -> None:
    assert dagbag.import_errors == {}, dagbag.import_errors
    assert dagbag.dags, "no DAG found in dags/"


def test_every_dag_file_parses_within_budget(dagbag: DagBag) -> None:
    slow = {s.file: s.duration.total_seconds() for s in dagbag.dagbag_stats}
    slow = {f: d for f, d in slow.items() if d >= PARSE_BUDGET_S}
    assert not slow, f"DAG files parsing in {PARSE_BUDGET_S}s or more: {slow}"


def dag_ids() -> list[str]:
    return sorted(p.stem for p in DAGS_DIR.glob("*.py") if not p.name.startswith("_"))


@pytest.mark.parametrize("dag_id", dag_ids())
def test_dag_rules(dagbag: DagBag, dag_id: str) -> None:
    dag = dagbag.dags.get(dag_id)
    assert dag is not None, f"dags/{dag_id}.py must define a DAG with dag_id {dag_id!r}"
    assert dag.tags, f"{dag_id}: needs tags"
    assert dag.doc_md and len(dag.doc_md.strip()) > 40, f"{dag_id}: needs docs (doc_md) for the UI"
    for task in dag.tasks:
        assert task.owner and task.owner != "airflow", f"{dag_id}.{task.task_id}: needs a real owner"
        assert (task.retries or 0) >= 1, f"{dag_id}.{task.task_id}: needs retries"
