"""BatchHook: a machine from the catalog, its batch-system adapter and its transport, in one place."""

from __future__ import annotations

import hashlib
import re
import shlex
import time
from collections.abc import Sequence
from functools import cached_property

from airflow.sdk import BaseHook

from operators.hpc import submission
from operators.hpc.adapters import BatchAdapter, JobRef, get_adapter
from operators.hpc.spec import JobSpec, judged_file
from operators.hpc.states import JobState, JobStatus
from operators.hpc.transport import LocalTransport, SSHTransport, Transport
from operators.machines.catalog import Machine, get_machine

_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def _clean(part: str, limit: int) -> str:
    return _UNSAFE.sub("_", part).strip("._-")[:limit] or "x"


def job_name(dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    """Stable, traceable name of one task's job: the same task instance always gets the same name.

    The try number is deliberately not part of it: a retry after a crashed worker must find the job the
    earlier try submitted (and re-attach) instead of submitting a duplicate.
    """
    digest = hashlib.sha256(f"{dag_id}\0{run_id}\0{task_id}\0{map_index}".encode()).hexdigest()[:10]
    member = f"-{map_index}" if map_index >= 0 else ""
    return f"uf-{_clean(dag_id, 32)}-{_clean(task_id, 32)}{member}-{digest}"


def run_workdir(base: str, dag_id: str, run_id: str) -> str:
    """The directory of one DAG run on a machine: its jobs' work dirs and its staged inputs go under it."""
    run_digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"{base}/{_clean(dag_id, 64)}/{_clean(run_id, 48)}-{run_digest}"


def job_workdir(base: str, dag_id: str, run_id: str, task_id: str, map_index: int) -> str:
    member = f".{map_index}" if map_index >= 0 else ""
    return f"{run_workdir(base, dag_id, run_id)}/{_clean(task_id, 64)}{member}"


def judged_command(workdir: str, name: str, job_id: str) -> str:
    """Mark ``job_id`` judged: a try consumed its end, so a later try submits afresh."""
    return f"printf '%s\\n' {shlex.quote(job_id)} > {shlex.quote(judged_file(workdir, name))}"


class BatchHook(BaseHook):
    """Runs batch jobs on one machine of the catalog (``include/machines.yaml``)."""

    conn_name_attr = "machine"
    hook_name = "urgentflow batch machine"

    def __init__(self, machine: str | Machine) -> None:
        super().__init__()
        self._machine = machine

    @cached_property
    def machine(self) -> Machine:
        return self._machine if isinstance(self._machine, Machine) else get_machine(self._machine)

    @cached_property
    def adapter(self) -> BatchAdapter:
        return get_adapter(self.machine.batch_system)

    @cached_property
    def transport(self) -> Transport:
        return SSHTransport(self.machine.connection) if self.machine.connection else LocalTransport()

    def get_conn(self) -> Transport:
        return self.transport

    def find(self, spec: JobSpec) -> tuple[str, str] | None:
        """A job this spec already has: ``(id, "live")`` while it runs, or ``(id, "unjudged")`` when an
        earlier try submitted it and no task has judged its end yet (the worker died meanwhile).

        One remote command (it also creates the work directory): see ``operators.hpc.submission``.
        """
        found = self._lookup(spec)
        return (found.job_id, found.why) if isinstance(found, submission.Found) else None

    def _lookup(self, spec: JobSpec) -> submission.Found | submission.Absent:
        lookup = submission.lookup_command(self.adapter, [spec])
        out = self.transport.run(submission.SCRIPT, stdin=lookup).check("job lookup")
        [found] = submission.parse_lookup(self.adapter, out.stdout, [spec])
        if isinstance(found, submission.SubmissionError):
            raise found
        return found

    def submit(self, spec: JobSpec) -> tuple[str, bool]:
        """Submit ``spec`` unless it already has a live or unjudged job; returns ``(job_id, reattached)``.

        Two remote commands: the look-up, then script, submission and job-id record.
        """
        found = self._lookup(spec)
        if isinstance(found, submission.Absent):
            script = submission.submit_command(self.adapter, [spec], [found])
            out = self.transport.run(submission.SCRIPT, stdin=script).check("submission")
            [submitted] = submission.parse_submit(self.adapter, out.stdout, [spec])
            if isinstance(submitted, submission.SubmissionError):
                raise submitted
            if isinstance(submitted, str):
                self.log.info("Submitted %s as job %s on %s", spec.name, submitted, self.machine.name)
                return submitted, False
            found = submitted
        self.log.info(
            "Re-attaching to %s job %s (%s) on %s", found.why, found.job_id, spec.name, self.machine.name
        )
        return found.job_id, True

    def mark_judged(self, workdir: str, name: str, job_id: str) -> None:
        """Record that a task consumed this job's end: a later try submits afresh instead of re-attaching."""
        self.transport.run(judged_command(workdir, name, job_id)).check("recording the judged job")

    def status(self, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        out = self.transport.run(self.adapter.status_command(jobs)).check("status")
        return self.adapter.parse_status(out.stdout, jobs)

    def wait(self, job: JobRef, poll_interval: float, unknown_grace_polls: int = 6) -> JobStatus:
        """Blocking wait (the non-deferrable debugging mode)."""
        unknown = 0
        while True:
            status = self.status([job])[job.job_id]
            unknown = unknown + 1 if status.state is JobState.UNKNOWN else 0
            if status.state.terminal or unknown > unknown_grace_polls:
                return status
            time.sleep(poll_interval)

    def cancel(self, job_ids: Sequence[str]) -> None:
        self.transport.run(self.adapter.cancel_command(job_ids)).check("cancel")

    def tail(self, path: str, lines: int = 20) -> str:
        return self.transport.run(self.adapter.tail_command(path, lines)).stdout
