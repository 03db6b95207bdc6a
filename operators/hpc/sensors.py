"""BatchJobSensor: wait for a batch job that was started outside Airflow, by its native id."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseSensorOperator, Context
from airflow.sdk.exceptions import AirflowException

from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook
from operators.hpc.states import JobState, JobStatus
from operators.hpc.triggers import BatchJobTrigger


class BatchJobSensor(BaseSensorOperator):
    """Succeeds when job ``job_id`` on ``machine`` completes; fails naming the state when it does not.

    ``exit_file`` is optional: jobs not written by us have none, and the batch system's accounting
    judges them alone.
    """

    template_fields: Sequence[str] = ("machine", "job_id", "exit_file")

    def __init__(
        self,
        *,
        machine: str,
        job_id: str,
        exit_file: str = "/nonexistent/urgentflow.exit",
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.machine = machine
        self.job_id = job_id
        self.exit_file = exit_file
        self.deferrable = deferrable

    def _ref(self) -> JobRef:
        job_id = str(self.job_id).strip()
        if not job_id.isdigit():
            raise AirflowException(f"job_id must be a native numeric id, got {self.job_id!r}")
        return JobRef(job_id, self.exit_file)

    def execute(self, context: Context) -> Any:
        if not self.deferrable:
            return super().execute(context)
        hook = BatchHook(self.machine)
        self.defer(
            trigger=BatchJobTrigger(
                machine=hook.machine.name,
                connection=hook.machine.connection,
                batch_system=hook.machine.batch_system,
                job_id=self._ref().job_id,
                exit_file=self.exit_file,
                poll_interval=self.poke_interval,
            ),
            method_name="execute_complete",
        )

    def poke(self, context: Context) -> bool:
        ref = self._ref()
        status = BatchHook(self.machine).status([ref])[ref.job_id]
        if status.state.terminal:
            _judge(status, self.machine)
            return True
        return False

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") != "done":
            raise AirflowException(
                f"lost track of job {self.job_id} on {self.machine}: {event.get('message')}"
            )
        return _judge(JobStatus.from_dict(event["job"]), self.machine)


def _judge(status: JobStatus, machine: str) -> dict[str, Any]:
    if status.state is not JobState.COMPLETED:
        raise AirflowException(
            f"job {status.job_id} on {machine} ended {status.state.value} "
            f"(native {status.native_state or '?'}, exit code {status.exit_code})"
        )
    return status.to_dict()
