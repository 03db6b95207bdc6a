"""BatchSubmitTrigger: a BatchJobOperator task from submission to its job's end, in the triggerer.

``BatchJobOperator`` sets ``start_from_trigger``: the scheduler defers each task instance straight to
this trigger, no worker starts. The trigger works out the task's arguments as a worker would
(``operators.hpc.trigger_args``), hands the job to its machine's submitter (the jobs of an ensemble go
out together, a few remote commands for all), keeps the job (XCom ``batch_job``, the catalog) and
watches it through the machine's poller. A job that completes ends the task here (``TaskSuccessEvent``
with the job as its return value); every other end (failure, walltime, a hold, an error) resumes the
task in a worker, whose ``execute_complete`` judges it exactly as for a job submitted from a worker.
A task whose arguments the triggerer cannot resolve resumes in a worker at once and submits from there.
The first member trigger of a mapped ensemble also submits its deferred siblings' first jobs
(``operators.hpc.ahead``): the ensemble goes out in one batch, not at the pace its triggers start.

Running it twice (a triggerer restart, a retry) re-attaches by the job's name: never two jobs.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from airflow.triggers.base import BaseTrigger, TaskSuccessEvent, TriggerEvent

from operators.hpc import ahead
from operators.hpc.adapters import JobRef
from operators.hpc.async_transport import async_transport
from operators.hpc.hook import judged_command
from operators.hpc.operators import BatchJobOperator
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState, JobStatus
from operators.hpc.submitter import get_submitter
from operators.hpc.trigger_args import TriggerTI, Unresolvable, operator_kwargs, sibling_kwargs
from operators.hpc.triggers import MachineAddress, cancel_job, watch_job
from operators.machines.catalog import Machine

T = TypeVar("T")
_PARAMETERS = set(inspect.signature(BatchJobOperator.__init__).parameters) - {"self", "kwargs"}
# The triggers' blocking work (XCom reads through the supervisor, catalog rows) waits on I/O: an
# ensemble's members do it at once, more of them than the event loop's default pool (CPUs + 4) holds.
_THREADS = ThreadPoolExecutor(max_workers=32, thread_name_prefix="urgentflow-trigger")


def _address(machine: Machine) -> MachineAddress:
    return MachineAddress(
        machine.name,
        machine.connection,
        machine.batch_system,
        machine.watch_exit_files,
        machine.completion_notice,
    )


async def _in_thread(function: Callable[..., T], *args: Any) -> T:
    return await asyncio.get_running_loop().run_in_executor(_THREADS, functools.partial(function, *args))


class BatchSubmitTrigger(BaseTrigger):
    """Submits and watches one task instance's job; ``operator_kwargs`` only for an unmapped task."""

    def __init__(self, operator_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.operator_kwargs = operator_kwargs
        self._job: dict[str, Any] | None = None
        self._submission: asyncio.Future[tuple[str, bool]] | None = None
        self._machine: Machine | None = None

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {"operator_kwargs": self.operator_kwargs},
        )

    def _prepare(self, ti: Any, kwargs: dict[str, Any] | None = None) -> tuple[BatchJobOperator, JobSpec]:
        """The task's operator and job spec, worked out as a worker would (blocking: run in a thread)."""
        if kwargs is None:
            kwargs = operator_kwargs(ti, self.operator_kwargs)
        op = BatchJobOperator(task_id=ti.task_id, **{k: v for k, v in kwargs.items() if k in _PARAMETERS})
        if not op.deferrable:
            raise Unresolvable("deferrable=False: the job is waited for in a worker")
        context: Any = {"ti": TriggerTI(ti, ti.task.dag)}
        return op, op._spec(context, int(op.walltime_minutes))

    def _siblings(self, ti: Any) -> list[ahead.Sibling]:
        """The jobs of ``ti``'s deferred siblings (the ones whose arguments work out here)."""
        siblings = []
        for sibling, kwargs in sibling_kwargs(ti, ahead.deferred_siblings(ti)):
            try:
                if isinstance(kwargs, Exception):
                    raise kwargs
                op, spec = self._prepare(sibling, kwargs)
            except Exception as exc:  # its own trigger resolves it (or resumes it in a worker)
                self.log.debug("Not submitting ahead for map index %d: %s", sibling.map_index, exc)
                continue
            m = op.hook().machine
            siblings.append(
                ahead.Sibling(
                    sibling.map_index, spec, m.name, m.connection, m.batch_system, op.catalog_conn_id
                )
            )
        return siblings

    async def run(self) -> AsyncIterator[TriggerEvent]:
        ti: Any = self.task_instance
        context: Any = {"ti": TriggerTI(ti, ti.task.dag)}
        started = time.monotonic()
        try:
            op, spec = await _in_thread(self._prepare, ti)
            hook = op.hook()
            self.log.info("Arguments resolved in %.2f s", time.monotonic() - started)
        except Unresolvable as exc:
            yield TriggerEvent({"status": "in_worker", "reason": str(exc)})
            return
        except Exception as exc:  # bad arguments or machine: the worker reports them with a traceback
            self.log.warning("Could not prepare %s's job here (%s): the worker will", ti.task_id, exc)
            yield TriggerEvent({"status": "in_worker", "reason": f"{type(exc).__name__}: {exc}"})
            return
        machine = hook.machine
        self._machine = machine
        watching: asyncio.Future[dict[str, Any]] | None = None
        try:
            # A task of its own, shielded: when the user cancels the task meanwhile, the submission still
            # ends and on_kill cancels what it submitted.
            submitter = get_submitter(machine.connection, machine.batch_system)
            self._submission = asyncio.ensure_future(submitter.submit(spec))
            if getattr(ti.task, "is_mapped", False):
                ahead.start(ti, self._siblings, _in_thread)
            job_id, reattached = await asyncio.shield(self._submission)
            self.log.info("Submission returned after %.2f s", time.monotonic() - started)
            try:
                reattached = ahead.claim(submitter.key, spec, job_id, reattached)
            except ahead.Mismatch:
                await cancel_job(self, _address(machine), job_id)
                await async_transport(machine.connection).run(judged_command(spec.workdir, spec.name, job_id))
                raise
            # The job is safe from here (its record on the machine names it): watching starts at once,
            # while the job is kept for the UI and the catalog (XCom, catalog row) beside it.
            watching = asyncio.ensure_future(
                watch_job(
                    self,
                    _address(machine),
                    JobRef(job_id, spec.exit_file, spec.name),
                    poll_interval=op.poll_interval,
                    held_timeout=60.0 * op._held_timeout_minutes(hook),
                )
            )
            self._job = await _in_thread(op.submitted, context, spec, job_id, reattached)
        except asyncio.CancelledError:  # the trigger is cancelled (task cleared, triggerer stopping)
            if watching is not None:
                watching.cancel()
            raise
        except Exception as exc:
            if watching is not None:
                watching.cancel()
            self.log.exception("Submitting %s on %s failed", spec.name, machine.name)
            yield TriggerEvent(
                {
                    "status": "error",
                    "machine": machine.name,
                    "job_id": (self._job or {}).get("job_id"),
                    "message": f"{type(exc).__name__}: {exc}",
                }
            )
            return
        self.log.info(
            "%s job %s (%s) on %s",
            "Re-attached to" if reattached else "Submitted",
            job_id,
            spec.name,
            machine.name,
        )
        event = await watching
        status = JobStatus.from_dict(event["job"]) if event["status"] == "done" else None
        if status is None or status.state is not JobState.COMPLETED:
            yield TriggerEvent(event)  # judged by the worker's execute_complete
            return
        # What execute_complete does for a completed job, here: the task ends without a worker.
        loop = asyncio.get_running_loop()
        transport = async_transport(machine.connection)

        def mark_judged(workdir: str, name: str, job_id: str) -> None:
            run = asyncio.run_coroutine_threadsafe(transport.run(judged_command(workdir, name, job_id)), loop)
            run.result(timeout=90).check("recording the judged job")

        try:
            job = await _in_thread(op.settle, context, status, mark_judged)
        except Exception as exc:  # e.g. its outputs not in the store as reported: the worker judges it
            self.log.warning("Could not keep the end of job %s here (%s): the worker will", job_id, exc)
            yield TriggerEvent(event)
            return
        self.log.info("Job %s on %s completed", job_id, machine.name)
        # Pushed here, not as TaskSuccessEvent(xcoms=...): Airflow 3.3.2 stores those JSON-encoded twice
        # (a dict comes back to the downstream task as a string).
        await _in_thread(context["ti"].xcom_push, "return_value", job)
        yield TaskSuccessEvent()

    async def on_kill(self) -> None:
        """The user marked or cleared the deferred task: cancel its batch job too (also one whose
        submission was still under way)."""
        job_id = (self._job or {}).get("job_id")
        if job_id is None and self._submission is not None:
            try:
                job_id, _ = await asyncio.wait_for(asyncio.shield(self._submission), 60)
            except Exception as exc:
                self.log.info("The submission of the cancelled task did not complete: %s", exc)
                return
        if job_id is None or self._machine is None:
            return
        await cancel_job(self, _address(self._machine), job_id)
