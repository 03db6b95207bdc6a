"""hpc_drill's shape on the urgent path: the members' commands are built beside selection and staging."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions._internal.templater import create_template_env
from modules import load_file

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "hpc_drill.py"


@pytest.fixture(scope="module")
def dags() -> dict[str, Any]:
    return DagBag(dag_folder=str(DAG_FILE)).dags


@pytest.fixture(scope="module")
def dag_module() -> ModuleType:
    return load_file("hpc_drill_dag_file", DAG_FILE)


@pytest.mark.parametrize("dag_id", ["hpc_drill", "hpc_drill_worker"])
def test_member_commands_need_only_the_params_and_members_wait_for_staging(
    dags: dict[str, Any], dag_id: str
) -> None:
    dag = dags[dag_id]
    assert not dag.get_task("member_commands").upstream_task_ids, "built at the start, beside staging"
    assert {"member_commands", "stage_input"} <= dag.get_task("member").upstream_task_ids


def test_a_member_reads_the_staged_input_path_from_staging(dag_module: ModuleType) -> None:
    class TI:
        @staticmethod
        def xcom_pull(task_ids: str) -> list[dict]:
            assert task_ids == "stage_input"
            return [{"path": "/w/drill/input.txt"}]

    template = create_template_env(native=True).from_string(dag_module.STAGED_INPUT)
    assert template.render(ti=TI()) == "/w/drill/input.txt"
