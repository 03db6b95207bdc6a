"""The embedded executor tells a deferring run's late exit from the end of the run that resumed it.

Airflow's ``LocalExecutor`` is used as is; only its hand-out to workers is replaced (no worker
processes here), the rest (change_state, the event buffer, has_task) is Airflow's own code.
"""

from __future__ import annotations

from typing import Any
from uuid import uuid4

import pytest
from airflow.executors.local_executor import LocalExecutor
from airflow.executors.workloads import ExecuteTask
from airflow.models.taskinstancekey import TaskInstanceKey
from airflow.utils.state import TaskInstanceState

from operators.executor import OutstandingWorkloads, ResumeSafeLocalExecutor

KEY = TaskInstanceKey("hpc_drill", "member", "manual__1", try_number=1, map_index=3)


class TI:
    """What ``has_task`` reads of a task instance."""

    def __init__(self, key: TaskInstanceKey) -> None:
        self.key, self.id = key, uuid4()


def workload(key: TaskInstanceKey) -> ExecuteTask:
    ti: Any = {
        "id": uuid4(),
        "dag_version_id": uuid4(),
        "task_id": key.task_id,
        "dag_id": key.dag_id,
        "run_id": key.run_id,
        "try_number": key.try_number,
        "map_index": key.map_index,
        "pool_slots": 1,
        "queue": "default",
        "priority_weight": 1,
    }
    return ExecuteTask.model_validate(
        {
            "ti": ti,
            "dag_rel_path": "hpc_drill.py",
            "bundle_info": {"name": "dags-folder"},
            "token": "t",
            "log_path": None,
            "sentry_integration": "",
        }
    )


@pytest.fixture
def executor(monkeypatch: pytest.MonkeyPatch) -> ResumeSafeLocalExecutor:
    handed: list[Any] = []
    monkeypatch.setattr(LocalExecutor, "_process_workloads", lambda self, items: handed.extend(items))
    return ResumeSafeLocalExecutor(parallelism=4)


def test_a_deferring_runs_late_exit_is_stale_while_its_resumed_run_is_out(
    executor: ResumeSafeLocalExecutor,
) -> None:
    executor._process_workloads([workload(KEY)])  # the run that defers
    executor._process_workloads([workload(KEY)])  # resumed (same key) before its exit was read
    executor.change_state(KEY, TaskInstanceState.SUCCESS)  # the deferring run's exit
    assert executor.get_event_buffer()[KEY][0] == TaskInstanceState.SUCCESS
    assert executor.has_task(TI(KEY)), "the scheduler must take the event for a requeue, not a kill"
    executor.change_state(KEY, TaskInstanceState.SUCCESS)  # the resumed run's end
    assert not executor.has_task(TI(KEY))


def test_a_single_run_that_ends_is_judged_as_airflow_judges_it(executor: ResumeSafeLocalExecutor) -> None:
    executor._process_workloads([workload(KEY)])
    assert executor.has_task(TI(KEY))
    executor.change_state(KEY, TaskInstanceState.FAILED)  # e.g. killed: the scheduler fails it as before
    assert not executor.has_task(TI(KEY))
    other = TaskInstanceKey("hpc_drill", "member", "manual__1", try_number=1, map_index=4)
    assert not executor.has_task(TI(other))


def test_outstanding_workloads_count_per_key() -> None:
    out = OutstandingWorkloads()
    out.handed_out("a")
    out.handed_out("a")
    out.handed_out("b")
    assert out.ended("a") is True and out.is_out("a")
    assert out.ended("a") is False and not out.is_out("a")
    assert out.ended("b") is False and not out.is_out("b")
    assert out.ended("never-handed-out") is False
