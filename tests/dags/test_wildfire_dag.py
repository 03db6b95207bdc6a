"""wildfire_forecast's shape on the urgent path: what runs beside what, and values rendered two ways agree."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from airflow.dag_processing.dagbag import DagBag
from airflow.sdk.definitions._internal.templater import create_template_env
from modules import load_file

DAG_FILE = Path(__file__).resolve().parents[2] / "dags" / "wildfire_forecast.py"


@pytest.fixture(scope="module")
def dag() -> Any:
    return DagBag(dag_folder=str(DAG_FILE)).dags["wildfire_forecast"]


@pytest.fixture(scope="module")
def dag_module() -> ModuleType:
    return load_file("wildfire_dag_file", DAG_FILE)


def test_selection_runs_beside_prepare_and_the_map_follows_the_members_at_once(dag: Any) -> None:
    assert "prepare" not in dag.get_task("select_machine").upstream_task_ids
    assert dag.get_task("simulate").start_from_trigger
    # the members' jobs publish their own outputs: no task between them and the aggregation
    assert dag.get_task("aggregate").upstream_task_ids == {"prepare", "simulate"}
    assert [a.name for a in dag.get_task("aggregate").outlets] == ["urgentflow_published"]


@pytest.mark.parametrize("deadline", [5, 6, 30, 59, 60, 61, 1440])
def test_the_walltime_selection_asks_for_is_the_one_the_members_get(
    dag_module: ModuleType, deadline: int
) -> None:
    template = create_template_env(native=True).from_string(dag_module.WALLTIME_MINUTES)
    value = template.render(params={"deadline_minutes": deadline})
    assert value == dag_module.walltime_minutes(deadline) and isinstance(value, int)


def test_the_members_follow_prepare_and_selection_at_once_and_fetch_their_inputs_themselves(
    dag: Any, dag_module: ModuleType
) -> None:
    simulate = dag.get_task("simulate")
    assert simulate.upstream_task_ids == {"prepare", "select_machine", "member_args"}, "no staging task"
    assert dag.get_task("member_args").upstream_task_ids == set(), "built beside prepare and selection"
    assert "inputs" in simulate.partial_kwargs and "inputs" in simulate.template_fields
    # the command runs the model on the files the job fetched into its work directory (each under its
    # key's last part: prepare stores them as <prefix>/inputs/<name>)
    assert "model.py --landscape landscape.npz --scenario scenario.json" in dag_module.MEMBER


def test_each_member_declares_its_own_two_files_as_outputs_under_the_runs_members_prefix(dag: Any) -> None:
    member_args = dag.get_task("member_args").python_callable
    args = member_args({"ensemble_size": 3})
    assert [a["outputs"] for a in args] == [[f"member-{i}.npz", f"member-{i}.json"] for i in range(3)]
    assert [a["command"][-1] for a in args] == ["0", "1", "2"], "the member index the model writes under"
    partial = dag.get_task("simulate").partial_kwargs
    assert {"output_prefix", "input_dataset_ids", "incident_id"} <= set(partial)
