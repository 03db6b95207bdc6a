"""Slurm: sbatch / squeue / sacct / scancel. Pure: strings in, strings out."""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from datetime import datetime

from operators.hpc.adapters.base import (
    SECTION,
    BatchAdapter,
    JobRef,
    exit_files_command,
    first_job_id,
    parse_exit_files,
    split_sections,
    template,
)
from operators.hpc.load import Estimate, MachineLoad, PartitionLoad
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState, JobStatus

# Native states (squeue long names and sacct names) to ours.
STATE_MAP: dict[str, JobState] = {
    "PENDING": JobState.PENDING,
    "CONFIGURING": JobState.PENDING,
    "REQUEUED": JobState.PENDING,
    "REQUEUE_HOLD": JobState.PENDING,
    "REQUEUE_FED": JobState.PENDING,
    "SUSPENDED": JobState.PENDING,
    "RESV_DEL_HOLD": JobState.PENDING,
    "RUNNING": JobState.RUNNING,
    "COMPLETING": JobState.RUNNING,
    "RESIZING": JobState.RUNNING,
    "SIGNALING": JobState.RUNNING,
    "STAGE_OUT": JobState.RUNNING,
    "STOPPED": JobState.RUNNING,
    "COMPLETED": JobState.COMPLETED,
    "FAILED": JobState.FAILED,
    "SPECIAL_EXIT": JobState.FAILED,
    "TIMEOUT": JobState.TIMEOUT,
    "DEADLINE": JobState.TIMEOUT,
    "OUT_OF_MEMORY": JobState.OUT_OF_MEMORY,
    "CANCELLED": JobState.CANCELLED,
    "REVOKED": JobState.CANCELLED,
    "NODE_FAIL": JobState.NODE_FAIL,
    "BOOT_FAIL": JobState.NODE_FAIL,
    "PREEMPTED": JobState.PREEMPTED,
}
# Both formats lead with the id and name; tests/unit/fixtures/slurm holds real outputs of each.
SQUEUE_FORMAT = "%i|%j|%T|%r"
SACCT_FIELDS = "JobID,JobName,State,ExitCode,Elapsed"
_SUBMITTED = re.compile(r"^(\d+)(;[\w.-]+)?$")
# node|partition (default marked *)|partition availability|node state|cores alloc/idle/other/total
SINFO_NODES_FORMAT = "%N|%P|%a|%T|%C"
SQUEUE_LOAD_FORMAT = "%u|%T|%P|%C"
_WILL_START = re.compile(r"to start at (\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)")
_DOWN_NODE_STATES = ("down", "drain", "fail", "maint", "reboot", "unknown", "future", "inval", "power")


def map_state(native: str) -> JobState:
    # sacct writes e.g. "CANCELLED by 1000"; squeue long names are exact.
    word = native.split()[0] if native.strip() else ""
    return STATE_MAP.get(word, JobState.UNKNOWN)


def _ids(jobs: Sequence[JobRef] | Sequence[str]) -> str:
    ids = [j.job_id if isinstance(j, JobRef) else j for j in jobs]
    for job_id in ids:
        if not job_id.isdigit():
            raise ValueError(f"not a Slurm job id: {job_id!r}")
    return ",".join(ids)


class SlurmAdapter(BatchAdapter):
    name = "slurm"

    def render_script(self, spec: JobSpec) -> str:
        optional = ""
        if spec.partition:
            optional += f"#SBATCH --partition={spec.partition}\n"
        if spec.account:
            optional += f"#SBATCH --account={spec.account}\n"
        if spec.memory_mb is not None:
            optional += f"#SBATCH --mem={spec.memory_mb}M\n"
        return template("slurm.sh").substitute(
            name=spec.name,
            workdir=spec.workdir,
            stdout=spec.stdout,
            stderr=spec.stderr,
            walltime_minutes=spec.walltime_minutes,
            nodes=spec.nodes,
            tasks=spec.tasks,
            cpus_per_task=spec.cpus_per_task,
            optional=optional,
            body=self.job_body(spec),
        )

    def submit_command(self, spec: JobSpec) -> str:
        return f"sbatch --parsable {shlex.quote(spec.script_path)}"

    def parse_submit(self, stdout: str) -> str:
        return first_job_id(stdout, _SUBMITTED, "sbatch")

    def status_command(self, jobs: Sequence[JobRef]) -> str:
        ids = _ids(jobs)
        return (
            f"squeue -h -t all -j {ids} -o '{SQUEUE_FORMAT}' 2>&1 || echo '{SQUEUE_FAILED}'; echo '{SECTION}'; "
            f"sacct -X -P -n -j {ids} -o {SACCT_FIELDS} 2>/dev/null; echo '{SECTION}'; "
            + exit_files_command(jobs)
        )

    def parse_status(self, stdout: str, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        sections = [*split_sections(stdout), [], [], []]
        if SQUEUE_FAILED in sections[0] and not any(UNKNOWN_IDS in line for line in sections[0]):
            # the controller did not answer (down, restarting): a failed poll, not news about the jobs
            text = " ".join(line for line in sections[0] if line != SQUEUE_FAILED)
            raise ValueError(f"squeue failed: {text or 'no output'}")
        queue = _rows(sections[0])
        acct = _rows(sections[1])
        exit_files = parse_exit_files(sections[2], jobs)
        result: dict[str, JobStatus] = {}
        for job in jobs:
            result[job.job_id] = _judge(job.job_id, _own(queue, job), _own(acct, job), exit_files.codes)
        return exit_files.with_outputs(result)

    def cancel_command(self, job_ids: Sequence[str]) -> str:
        return f"scancel {_ids(job_ids).replace(',', ' ')}"

    def find_command(self, name: str, workdir: str) -> str:
        return (
            f'squeue -h -u "$(id -un)" -t PENDING,RUNNING,CONFIGURING,SUSPENDED -n {shlex.quote(name)} -o %i'
        )

    def find_all_command(self, specs: Sequence[JobSpec]) -> str:
        if not specs:
            return "true"
        names = shlex.quote(",".join(s.name for s in specs))
        return f'squeue -h -u "$(id -un)" -t PENDING,RUNNING,CONFIGURING,SUSPENDED -n {names} -o "%j %i"'

    def load_command(self) -> str:
        return (
            f"id -un; echo '{SECTION}'; sinfo -h -N -o '{SINFO_NODES_FORMAT}'; echo '{SECTION}'; "
            f"squeue -h -t PENDING,RUNNING -o '{SQUEUE_LOAD_FORMAT}'"
        )

    def parse_load(self, stdout: str) -> MachineLoad:
        user_lines, nodes, queue = [*split_sections(stdout), [], [], []][:3]
        load = MachineLoad(user=user_lines[0].strip() if user_lines else "")
        for line in nodes:
            fields = line.split("|")
            if len(fields) != 5:
                continue
            _node, name, avail, state, cores = fields
            part = load.partitions.setdefault(name.rstrip("*"), PartitionLoad(name.rstrip("*")))
            part.available = avail == "up"
            alloc, idle, _out_of_service, total = (int(c) for c in cores.split("/"))
            part.nodes_total += 1
            if state.startswith(_DOWN_NODE_STATES):
                part.nodes_down += 1
            elif state == "idle":
                part.nodes_idle += 1
            part.cores_total += total
            part.cores_allocated += alloc
            part.cores_idle += idle if part.available else 0
        for line in queue:
            fields = line.split("|")
            if len(fields) != 4 or not fields[3].isdigit():
                continue
            user, state, name, cores = fields
            running = state == "RUNNING"
            ours = user == load.user
            load.jobs_running += running
            load.jobs_pending += not running
            load.ours_running += running and ours
            load.ours_pending += not running and ours
            for part_name in name.split(","):  # a job may be queued to several partitions
                part = load.partitions.setdefault(part_name, PartitionLoad(part_name))
                part.jobs_running += running
                part.jobs_pending += not running
                part.cores_pending += 0 if running else int(cores)
        return load

    def estimate_command(
        self, partition: str, cores: int, memory_mb: int | None, walltime_minutes: int
    ) -> str:
        memory = f" --mem={int(memory_mb)}M" if memory_mb else ""
        return (
            "date +%Y-%m-%dT%H:%M:%S; "
            f"sbatch --test-only -p {shlex.quote(partition)} -c {int(cores)}{memory} "
            f'--time={int(walltime_minutes)} --wrap true 2>&1; echo "exit=$?"'
        )

    def parse_estimate(self, stdout: str) -> Estimate:
        """``sbatch --test-only``: "Job N to start at T ..." (host-local time, like the first line's
        ``date``, so their difference needs no time zone) or the reason it cannot run."""
        lines = [line.strip() for line in stdout.splitlines() if line.strip()]
        start = _WILL_START.search(stdout)
        if start and lines and "exit=0" in lines:
            now = datetime.fromisoformat(lines[0])
            wait = (datetime.fromisoformat(start.group(1)) - now).total_seconds()
            return Estimate(True, max(0.0, wait))
        reasons = [line for line in lines[1:] if not line.startswith("exit=")]
        return Estimate(False, None, "; ".join(reasons)[:300] or "sbatch --test-only refused the job")


def _rows(lines: Sequence[str]) -> dict[str, list[list[str]]]:
    """Rows ``id|name|...`` by job id; an id reused after a controller crash has several."""
    rows: dict[str, list[list[str]]] = {}
    for line in lines:
        fields = line.split("|")
        if len(fields) >= 2 and fields[0].isdigit():
            rows.setdefault(fields[0], []).append(fields)
    return rows


def _own(rows: dict[str, list[list[str]]], job: JobRef) -> list[str] | None:
    """The last row under the job's id that can be this job's (its name, when the job has one)."""
    return next((r for r in reversed(rows.get(job.job_id, [])) if job.owns(r[1])), None)


def _exit_code(field: str) -> int | None:
    code, _, _signal = field.partition(":")
    return int(code) if code.isdigit() else None


SQUEUE_FAILED = "#urgentflow-queue-unreadable"
UNKNOWN_IDS = "Invalid job id specified"  # squeue's answer when none of the ids is in the queue


def _judge(
    job_id: str, queue: list[str] | None, acct: list[str] | None, exit_codes: dict[str, int]
) -> JobStatus:
    """sacct for ended jobs, squeue for live ones, then the exit-code file; else UNKNOWN.

    Rows are ``id|name|state|...``: squeue ``%i|%j|%T|%r``, sacct ``JobID,JobName,State,ExitCode,Elapsed``.
    """
    file_code = exit_codes.get(job_id)
    acct_state = map_state(acct[2]) if acct and len(acct) > 3 else None
    if acct and acct_state is not None and acct_state.terminal:
        code = _exit_code(acct[3])
        if acct_state is JobState.FAILED and code == 0 and file_code:
            code = file_code
        return JobStatus(job_id, acct_state, code, native_state=acct[2])
    if queue and len(queue) > 2:
        state = map_state(queue[2])
        code = file_code if state.terminal else None
        reason = queue[3] if len(queue) > 3 else ""
        held = state is JobState.PENDING and "held" in reason.lower()  # JobHeldAdmin, ...requeued held
        return JobStatus(job_id, state, code, native_state=queue[2], reason=reason, held=held)
    if acct and acct_state is not None:
        # Not in the queue, yet accounting says PENDING/RUNNING: sacct lags squeue by seconds when a
        # job just ended (the unknown-grace polls wait for it), or slurmctld lost the job (a crash
        # before its state was saved: accounting then says PENDING for ever). UNKNOWN either way, so
        # a job that never shows up again ends instead of being watched for ever.
        return JobStatus(
            job_id,
            JobState.UNKNOWN,
            None,
            native_state=acct[2],
            reason=f"not in the queue; accounting still says {acct[2]}",
        )
    if file_code is not None:
        state = JobState.COMPLETED if file_code == 0 else JobState.FAILED
        return JobStatus(job_id, state, file_code, native_state="exit-file")
    return JobStatus(job_id, JobState.UNKNOWN, None, native_state="", reason="not known to squeue or sacct")
