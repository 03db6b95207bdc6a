"""The embedded runtime's executor: Airflow's LocalExecutor that knows a task resumed after a deferral.

Airflow 3.3.2 runs a task that resumes after ``defer()`` under the same key (same try number) as the
run that deferred. When a trigger fires within about a second of the deferral, the scheduler queues
and hands out the resumed task before it has read the deferring process's exit; that exit (SUCCESS
for the same key) then meets a task instance that is QUEUED or RUNNING again, ``has_task`` is False
(the LocalExecutor forgets a workload once it hands it to a worker), and
``SchedulerJobRunner.process_executor_events`` fails the task as "killed externally" (a retry, or a
failed member). Airflow only guards the moment the task is still SCHEDULED.

This executor counts, per key, the workloads handed to its workers and the results they reported. A
result for a key that still has a newer workload out is a stale one (the deferring run's exit):
``has_task`` answers True for the key while a workload of it is out, so the scheduler treats the
event as the requeue it is. A key with one workload out behaves exactly as in Airflow (a task killed
externally is still failed). The upstream fix would be the same test in ``process_executor_events``
(a SUCCESS event for a try whose task instance has ``next_method`` set and is QUEUED or RUNNING).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

from airflow.executors.local_executor import LocalExecutor
from airflow.executors.workloads import ExecuteTask
from airflow.utils.state import TaskInstanceState

TERMINAL = (TaskInstanceState.SUCCESS, TaskInstanceState.FAILED)


class OutstandingWorkloads:
    """How many workloads of each key were handed out and have not reported an end yet."""

    def __init__(self) -> None:
        self._out: Counter[Hashable] = Counter()

    def handed_out(self, key: Hashable) -> None:
        self._out[key] += 1

    def ended(self, key: Hashable) -> bool:
        """Count one end of ``key``; True when it was stale (another workload of the key is still out)."""
        out = self._out[key]
        if out <= 1:
            self._out.pop(key, None)
            return False
        self._out[key] = out - 1
        return True

    def is_out(self, key: Hashable) -> bool:
        return self._out[key] > 0


class ResumeSafeLocalExecutor(LocalExecutor):
    """``LocalExecutor`` whose ``has_task`` also knows the tasks its workers are running now."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outstanding = OutstandingWorkloads()

    def _process_workloads(self, workload_list: Sequence[Any]) -> None:
        for workload in workload_list:
            if isinstance(workload, ExecuteTask):
                self.outstanding.handed_out(workload.key)
        super()._process_workloads(workload_list)

    def change_state(self, key: Any, state: Any, info: Any = None, remove_running: bool = True) -> None:
        if state in TERMINAL and self.outstanding.ended(key):
            self.log.info("Stale %s for %s: a newer run of it (resumed after a deferral) is out", state, key)
        super().change_state(key, state, info, remove_running)

    def has_task(self, task_instance: Any) -> bool:
        return super().has_task(task_instance) or self.outstanding.is_out(task_instance.key)
