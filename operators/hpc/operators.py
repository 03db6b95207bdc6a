"""BatchJobOperator: submit a batch job to a catalog machine and wait for it without holding a worker."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import StartTriggerArgs

from operators.catalog.catalog import Catalog, Producer, task_map_index
from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook, job_name, job_workdir
from operators.hpc.notice import notice_for
from operators.hpc.outputs import download_links, record_outputs, upload_links
from operators.hpc.spec import Download, JobSpec, Upload
from operators.hpc.states import JobState, JobStatus
from operators.hpc.triggers import BatchJobTrigger

XCOM_KEY = "batch_job"
START_TRIGGER = "operators.hpc.start_trigger.BatchSubmitTrigger"


class BatchJobOperator(BaseOperator):
    """Run ``command`` (an argv list, every element quoted) as a batch job on ``machine``.

    Before submitting it looks for a job of the same task instance that is still running, or that an
    earlier try submitted but never judged (its worker died), and re-attaches to it: a crashed
    worker, scheduler or triggerer never makes it submit twice. A try that judged a job's end marks
    it, so a retry after a failed job (or a clear) submits a fresh one. ``{machine, job_id, workdir, stdout, stderr}`` is
    pushed to XCom (key ``batch_job``) before deferring; the return value is the same dict with the
    final state. ``timeout_resubmit_factor`` (opt-in) resubmits a job that hit its walltime with
    walltime * factor, up to ``max_walltime_minutes``. A job left on a hold (e.g. Slurm's "launch failed
    requeued held" after a controller crash, which only the site's admin can release) for
    ``held_timeout_minutes`` (the machine's, or shorter when given) is cancelled and submitted afresh,
    once per try; both jobs are recorded.

    ``inputs`` (object-store keys) are fetched by the job itself into its work directory before its
    command runs, each under the key's last part, through presigned links, checked against the sha256
    the store recorded and fetched once per run on the machine (``operators.hpc.outputs``): no staging
    task before the job. A missing input is refused before submission; a failed fetch fails the job
    (exit 66) without running its command.

    ``outputs`` (file names in the job's work directory) are published by the job itself when its
    command succeeds: each goes to ``output_prefix/<name>`` in the object store through a presigned link
    in its script, with its sha256 and size computed on the machine (``operators.hpc.outputs``); when the
    job's end is judged they are checked in the store and catalogued with lineage ``input_dataset_ids``
    -> output (and ``incident_id``), and the result lists them under ``outputs`` (``[{key, size, sha256,
    dataset_id, job_id}]``). A declared output the job did not write fails it. Use it where the compute
    nodes reach the object store; elsewhere stage with ``StageToMachineOperator`` and
    ``StageFromMachineOperator``.

    Deferrable by default, whatever ``[operators] default_deferrable`` says: holding a worker slot for
    the life of an HPC job is what this operator exists to avoid. ``deferrable=False`` waits in the
    worker with the same hook (for debugging).
    """

    template_fields: Sequence[str] = (
        "machine",
        "command",
        "environment",
        "partition",
        "account",
        "walltime_minutes",
        "memory_mb",
        "timeout_resubmit_factor",
        "max_walltime_minutes",
        "held_timeout_minutes",
        "inputs",
        "outputs",
        "output_prefix",
        "input_dataset_ids",
        "incident_id",
    )
    template_fields_renderers: ClassVar[dict[str, str]] = {"command": "json", "environment": "json"}
    ui_color = "#c9e4f5"
    # The scheduler hands the task straight to the triggerer, which submits it (batched per machine) and
    # watches it: no worker starts just to call sbatch (operators.hpc.start_trigger).
    start_from_trigger = True
    start_trigger_args = StartTriggerArgs(START_TRIGGER, "execute_complete", {}, None, None)

    def __init__(
        self,
        *,
        machine: str,
        command: Sequence[str],
        walltime_minutes: int = 10,
        nodes: int = 1,
        tasks: int = 1,
        cpus_per_task: int = 1,
        memory_mb: int | None = None,
        partition: str | None = None,
        account: str | None = None,
        environment: Mapping[str, str] | None = None,
        setup: Sequence[str] = (),
        poll_interval: float = 5.0,
        timeout_resubmit_factor: float | None = None,
        max_walltime_minutes: int | None = None,
        held_timeout_minutes: float | None = None,
        stderr_tail_lines: int = 20,
        catalog_conn_id: str | None = "catalog_db",
        inputs: Sequence[str] = (),
        outputs: Sequence[str] = (),
        output_prefix: str | None = None,
        input_dataset_ids: Sequence[int] = (),
        incident_id: str | None = None,
        object_store_conn_id: str = "object_store",
        deferrable: bool = True,
        start_from_trigger: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.machine = machine
        self.command = command
        self.walltime_minutes = walltime_minutes
        self.nodes = nodes
        self.tasks = tasks
        self.cpus_per_task = cpus_per_task
        self.memory_mb = memory_mb
        self.partition = partition
        self.account = account
        self.environment = environment
        self.setup = setup
        self.poll_interval = poll_interval
        self.timeout_resubmit_factor = timeout_resubmit_factor
        self.max_walltime_minutes = max_walltime_minutes
        self.held_timeout_minutes = held_timeout_minutes
        self.stderr_tail_lines = stderr_tail_lines
        self.catalog_conn_id = catalog_conn_id
        self.inputs = inputs
        self.outputs = outputs
        self.output_prefix = output_prefix
        self.input_dataset_ids = input_dataset_ids
        self.incident_id = incident_id
        self.object_store_conn_id = object_store_conn_id
        self.deferrable = deferrable
        self._job: dict[str, Any] | None = None
        self.start_from_trigger = bool(start_from_trigger and deferrable)
        if self.start_from_trigger:
            # An unmapped task keeps its arguments with the trigger (a mapped one has its partial kwargs and
            # never runs this at parse time; when a worker or the trigger builds one of its members, the
            # stored copy is unused).
            stored = {
                "machine": machine, "command": command, "walltime_minutes": walltime_minutes, "nodes": nodes,
                "tasks": tasks, "cpus_per_task": cpus_per_task, "memory_mb": memory_mb, "partition": partition,
                "account": account, "environment": environment, "setup": setup, "poll_interval": poll_interval,
                "timeout_resubmit_factor": timeout_resubmit_factor, "max_walltime_minutes": max_walltime_minutes,
                "held_timeout_minutes": held_timeout_minutes, "stderr_tail_lines": stderr_tail_lines,
                "catalog_conn_id": catalog_conn_id, "inputs": inputs, "outputs": outputs, "output_prefix": output_prefix,
                "input_dataset_ids": input_dataset_ids, "incident_id": incident_id,
                "object_store_conn_id": object_store_conn_id,
            }  # fmt: skip
            try:
                stored = json.loads(json.dumps(stored))
            except TypeError:  # an XComArg argument: only a worker resolves it
                self.start_from_trigger = False
            else:
                self.start_trigger_args = StartTriggerArgs(
                    START_TRIGGER, "execute_complete", {"operator_kwargs": stored}, None, None
                )

    def hook(self) -> BatchHook:
        return BatchHook(self.machine)

    def _spec(self, context: Context, walltime_minutes: int) -> JobSpec:
        ti = context["ti"]
        map_index = task_map_index(context["ti"])
        hook = self.hook()
        name = job_name(ti.dag_id, ti.run_id, ti.task_id, map_index)
        return JobSpec(
            name=name,
            command=[str(a) for a in self.command],
            workdir=job_workdir(hook.machine.workdir, ti.dag_id, ti.run_id, ti.task_id, map_index),
            walltime_minutes=int(walltime_minutes),
            nodes=self.nodes,
            tasks=self.tasks,
            cpus_per_task=self.cpus_per_task,
            memory_mb=int(self.memory_mb) if self.memory_mb is not None else None,
            partition=self.partition or hook.machine.default_partition,
            account=self.account,
            environment={str(k): str(v) for k, v in (self.environment or {}).items()},
            setup=[*hook.machine.setup_lines(), *self.setup],
            uploads=self._uploads(),
            downloads=self._downloads(),
            notice=notice_for(hook.machine.name, name) if hook.machine.completion_notice else None,
        )

    def _jobs_reach_store(self, what: str, instead: str) -> None:
        machine = self.hook().machine
        if not machine.jobs_reach_store:
            raise ValueError(
                f"machine {machine.name}'s jobs cannot reach the object store (jobs_reach_store: false in the"
                f" machine catalog): declare no {what} and stage them with {instead}"
            )

    def _downloads(self) -> list[Download]:
        """Refused before anything runs when the job could not fetch them or one is not in the store."""
        if not self.inputs:
            return []
        self._jobs_reach_store("inputs", "StageToMachineOperator")
        return download_links(self.object_store_conn_id, [str(k) for k in self.inputs])

    def _uploads(self) -> list[Upload]:
        """Refused before anything runs when the job could not publish them."""
        if not self.outputs:
            return []
        if not self.output_prefix:
            raise ValueError("outputs need an output_prefix: where in the object store they go")
        self._jobs_reach_store("outputs", "StageFromMachineOperator")
        return upload_links(
            self.object_store_conn_id, str(self.output_prefix), [str(n) for n in self.outputs]
        )

    def execute(self, context: Context) -> dict[str, Any]:
        return self._submit(context, self._spec(context, int(self.walltime_minutes)))

    def _submit(self, context: Context, spec: JobSpec, held_resubmits: int = 0) -> dict[str, Any]:
        hook = self.hook()
        job_id, reattached = hook.submit(spec)
        self.submitted(context, spec, job_id, reattached, held_resubmits)
        if not self.deferrable:
            status = hook.wait(JobRef(job_id, spec.exit_file, spec.name), self.poll_interval)
            return self._finish(context, status, spec.walltime_minutes)
        self.defer(
            trigger=BatchJobTrigger(
                machine=hook.machine.name,
                connection=hook.machine.connection,
                batch_system=hook.machine.batch_system,
                job_id=job_id,
                exit_file=spec.exit_file,
                job_name=spec.name,
                poll_interval=self.poll_interval,
                held_timeout=60.0 * self._held_timeout_minutes(hook),
                watch_exit_files=hook.machine.watch_exit_files,
                completion_notice=hook.machine.completion_notice,
            ),
            method_name="execute_complete",
        )
        raise AssertionError("defer() returned")  # pragma: no cover - defer raises

    def submitted(
        self, context: Context, spec: JobSpec, job_id: str, reattached: bool, held_resubmits: int = 0
    ) -> dict[str, Any]:
        """Keep the job (XCom ``batch_job``, the catalog) before anything waits for it: a restart of
        anything finds it from here."""
        self._job = {
            "machine": self.hook().machine.name,
            "job_id": job_id,
            "name": spec.name,
            "workdir": spec.workdir,
            "stdout": spec.stdout,
            "stderr": spec.stderr,
            "exit_file": spec.exit_file,
            "walltime_minutes": spec.walltime_minutes,
            "reattached": reattached,
            "held_resubmits": held_resubmits,
        }
        # The catalog first: it does not queue behind the XCom writes of an ensemble's other members (in the
        # triggerer those go through its supervisor one at a time).
        self._record(context, "SUBMITTED" if not reattached else "REATTACHED", None)
        context["ti"].xcom_push(key=XCOM_KEY, value=self._job)
        return self._job

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, Any]:
        if event.get("status") == "in_worker":
            # Started in the triggerer, which could not work out this task's arguments: run it here.
            self.log.info("Submitting from the worker: %s", event.get("reason"))
            return self.execute(context)
        self._job = context["ti"].xcom_pull(
            task_ids=self.task_id, key=XCOM_KEY, map_indexes=_map_index(context)
        )
        if event.get("status") != "done":
            what = f"job {event['job_id']}" if event.get("job_id") else "submission"
            raise AirflowException(f"lost track of {what} on {event.get('machine')}: {event.get('message')}")
        walltime = int((self._job or {}).get("walltime_minutes") or self.walltime_minutes)
        return self._finish(context, JobStatus.from_dict(event["job"]), walltime)

    def _finish(self, context: Context, status: JobStatus, walltime: int) -> dict[str, Any]:
        if status.held and not status.state.terminal:
            return self._replace_held(context, status, walltime)
        job = self.settle(context, status, self.hook().mark_judged)
        if status.state is JobState.COMPLETED:
            self.log.info("Job %s on %s completed", status.job_id, job.get("machine"))
            return job
        if status.state is JobState.TIMEOUT and self.timeout_resubmit_factor:
            longer = int(walltime * float(self.timeout_resubmit_factor) + 0.999)
            cap = int(self.max_walltime_minutes or longer)
            if min(longer, cap) > walltime:
                self.log.warning(
                    "Job %s hit its walltime (%d min): resubmitting with %d min",
                    status.job_id,
                    walltime,
                    min(longer, cap),
                )
                return self._submit(context, self._spec(context, min(longer, cap)))
        tail = ""
        if job.get("stderr"):
            try:
                tail = self.hook().tail(job["stderr"], self.stderr_tail_lines).rstrip()
            except Exception as exc:
                tail = f"(could not read stderr: {exc})"
        code = "none" if status.exit_code is None else str(status.exit_code)
        raise AirflowException(
            f"job {status.job_id} ({job.get('name')}) on {job.get('machine')} ended {status.state.value} "
            f"(native {status.native_state or '?'}, exit code {code}{', ' + status.reason if status.reason else ''}); "
            f"last lines of stderr ({job.get('stderr')}):\n{tail or '(empty)'}"
        )

    def settle(
        self, context: Context, status: JobStatus, mark_judged: Callable[[str, str, str], None]
    ) -> dict[str, Any]:
        """Keep a job's end: its state in the catalog, and the job marked judged on its machine (this try
        consumed its end: a later try, retry or clear, submits afresh). Returns the job with its end."""
        job = dict(self._job or {})
        job.update(state=status.state.value, exit_code=status.exit_code, native_state=status.native_state)
        if status.state is JobState.COMPLETED and self.outputs:
            # First: when they are not in the store as the job said, nothing is kept of this end (a retry
            # re-attaches to the unjudged job and judges it again).
            job["outputs"] = record_outputs(
                self.object_store_conn_id,
                Catalog(self.catalog_conn_id) if self.catalog_conn_id else None,
                Producer.of(context["ti"], machine=job.get("machine"), job_id=status.job_id),
                status,
                [str(n) for n in self.outputs],
                str(self.output_prefix),
                [int(i) for i in self.input_dataset_ids or ()],
                self.incident_id or None,
            )
        self._record(context, status.state.value, status.exit_code)
        if job.get("workdir") and job.get("name"):
            try:
                mark_judged(job["workdir"], job["name"], status.job_id)
            except Exception as exc:
                self.log.warning("Could not record that job %s was judged: %s", status.job_id, exc)
        return job

    def _held_timeout_minutes(self, hook: BatchHook) -> float:
        """The machine's limit, or a shorter one the task asks for (an incident's deadline)."""
        limit = float(hook.machine.held_timeout_minutes)
        return min(limit, float(self.held_timeout_minutes)) if self.held_timeout_minutes else limit

    def _replace_held(self, context: Context, status: JobStatus, walltime: int) -> dict[str, Any]:
        """Cancel a job nobody released from its hold, record it, and submit the member afresh (once)."""
        job = dict(self._job or {})
        hook = self.hook()
        self.log.warning(
            "Job %s on %s held too long (%s): cancelling it and submitting afresh",
            status.job_id,
            job.get("machine"),
            status.reason or status.native_state,
        )
        hook.cancel([status.job_id])
        hook.mark_judged(job["workdir"], job["name"], status.job_id)  # the retry must not re-attach to it
        self._record(context, "CANCELLED", None)
        done = int(job.get("held_resubmits") or 0)
        if done >= 1:
            raise AirflowException(
                f"job {status.job_id} ({job.get('name')}) on {job.get('machine')} was held too long again "
                f"({status.reason or status.native_state}); cancelled"
            )
        return self._submit(context, self._spec(context, walltime), held_resubmits=done + 1)

    def _record(self, context: Context, state: str, exit_code: int | None) -> None:
        """Add the job and this state to the catalog; the catalog being away never fails the job."""
        job = self._job or {}
        if not self.catalog_conn_id or not job.get("job_id"):
            return
        try:
            Catalog(self.catalog_conn_id).record_job(
                machine=job["machine"],
                native_id=job["job_id"],
                name=job["name"],
                state=state,
                exit_code=exit_code,
                producer=Producer.of(context["ti"]),
            )
        except Exception as exc:
            self.log.warning("Could not record job %s (%s) in the catalog: %s", job["job_id"], state, exc)

    def on_kill(self) -> None:
        job = self._job
        if job is None:
            ti = getattr(self, "task_instance", None)
            if ti is not None:
                job = ti.xcom_pull(task_ids=self.task_id, key=XCOM_KEY, map_indexes=ti.map_index)
        if not job:
            self.log.info("No batch job to cancel")
            return
        self.log.info("Cancelling job %s on %s", job["job_id"], job["machine"])
        self.hook().cancel([job["job_id"]])


def _map_index(context: Context) -> int | None:
    """The map index as ``xcom_pull(map_indexes=...)`` wants it: None when the task is not mapped."""
    index = task_map_index(context["ti"])
    return None if index < 0 else index
