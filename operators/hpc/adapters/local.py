"""local: jobs as background process groups on a host (the Airflow host, or any host over SSH).

For laptops, the embedded demo and machines without a batch system. The native id is the PID of
the job's process group leader; the walltime is enforced with coreutils ``timeout``.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence

from operators.hpc.adapters.base import (
    SECTION,
    BatchAdapter,
    JobRef,
    exit_files_command,
    parse_exit_files,
    split_sections,
    template,
)
from operators.hpc.load import MachineLoad, PartitionLoad
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState, JobStatus

TIMEOUT_EXIT = 124  # coreutils timeout
SIGNAL_EXITS = {143: "SIGTERM", 137: "SIGKILL", 130: "SIGINT"}


def _job_name(job: JobRef) -> str:
    return job.exit_file.rsplit("/", 1)[-1].removesuffix(".exit")


def _pids(job_ids: Sequence[str]) -> list[str]:
    for job_id in job_ids:
        if not job_id.isdigit():
            raise ValueError(f"not a process id: {job_id!r}")
    return list(job_ids)


class LocalAdapter(BatchAdapter):
    name = "local"

    def render_script(self, spec: JobSpec) -> str:
        launch = f"timeout --kill-after=10 {spec.walltime_minutes * 60}s "
        return template("local.sh").substitute(
            name=spec.name, walltime_minutes=spec.walltime_minutes, body=self.job_body(spec, launch=launch)
        )

    def submit_command(self, spec: JobSpec) -> str:
        # The job must be the backgrounded simple command itself (not a `cd && ...` list, whose
        # subshell would keep our stdout open until the job ends): $! is then the job's own pid.
        q = shlex.quote
        return (
            f"cd {q(spec.workdir)} || exit 127; setsid nohup bash {q(spec.script_path)} "
            f"> {q(spec.stdout)} 2> {q(spec.stderr)} < /dev/null & "
            f"echo $! > {q(self._pid_file(spec.workdir, spec.name))} && echo $!"
        )

    def parse_submit(self, stdout: str) -> str:
        found = self.parse_find(stdout)
        if found is None:
            raise ValueError(f"local submission printed no process id: {stdout.strip()[:200]!r}")
        return found

    def status_command(self, jobs: Sequence[JobRef]) -> str:
        pids = ",".join(_pids([j.job_id for j in jobs]))
        return f"ps -o pid=,args= -p {pids} 2>/dev/null; echo '{SECTION}'; " + exit_files_command(jobs)

    def parse_status(self, stdout: str, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        sections = [*split_sections(stdout), [], []]
        alive = {}
        for line in sections[0]:
            pid, _, args = line.strip().partition(" ")
            alive[pid] = args
        exit_files = parse_exit_files(sections[1], jobs)
        result = {}
        for job in jobs:
            code = exit_files.codes.get(job.job_id)
            if code is not None:
                result[job.job_id] = _from_exit_code(job.job_id, code)
            elif _job_name(job) in alive.get(job.job_id, ""):
                result[job.job_id] = JobStatus(job.job_id, JobState.RUNNING, native_state="running")
            else:
                result[job.job_id] = JobStatus(
                    job.job_id,
                    JobState.CANCELLED,
                    None,
                    native_state="gone",
                    reason="process ended without writing its exit code (killed)",
                )
        return exit_files.with_outputs(result)

    def cancel_command(self, job_ids: Sequence[str]) -> str:
        # The job leads its own session (setsid); coreutils timeout moves into a process group of its
        # own inside it, so the whole session is signalled, not just the leader's group.
        return " ; ".join(f"pkill -TERM -s {pid}" for pid in _pids(job_ids)) + " ; true"

    def find_command(self, name: str, workdir: str) -> str:
        pid_file = shlex.quote(self._pid_file(workdir, name))
        return (
            f'p=$(cat {pid_file} 2>/dev/null) && [ -n "$p" ] && '
            f'ps -o args= -p "$p" | grep -qF {shlex.quote(name)} && echo "$p" || true'
        )

    def load_command(self) -> str:
        # our jobs are `bash <workdir>/uf-<name>.sh` processes (see submit_command)
        return f"id -un; echo '{SECTION}'; nproc; echo '{SECTION}'; ps -eo args= | grep -c '^bash .*/uf-[^/ ]*\\.sh$' || true"

    def parse_load(self, stdout: str) -> MachineLoad:
        """One partition, ``local``: the host's cores, one per running job (no queue: jobs start at once)."""
        user, cores, running = ([*split_sections(stdout), [], [], []])[:3]
        total = int(cores[0]) if cores and cores[0].strip().isdigit() else 0
        jobs = int(running[0]) if running and running[0].strip().isdigit() else 0
        part = PartitionLoad(
            "local",
            nodes_total=1,
            nodes_idle=int(jobs == 0),
            cores_total=total,
            cores_allocated=min(jobs, total),
            cores_idle=max(0, total - jobs),
            jobs_running=jobs,
        )
        return MachineLoad(
            user=user[0].strip() if user else "",
            partitions={"local": part},
            jobs_running=jobs,
            ours_running=jobs,
        )

    @staticmethod
    def _pid_file(workdir: str, name: str) -> str:
        return f"{workdir}/{name}.pid"


def _from_exit_code(job_id: str, code: int) -> JobStatus:
    if code == 0:
        return JobStatus(job_id, JobState.COMPLETED, 0, native_state="exit 0")
    if code in (TIMEOUT_EXIT, TIMEOUT_EXIT + 13):  # 137 after --kill-after is a kill too, but 124 first
        return JobStatus(
            job_id, JobState.TIMEOUT, code, native_state=f"exit {code}", reason="walltime reached"
        )
    if code in SIGNAL_EXITS:
        return JobStatus(
            job_id, JobState.CANCELLED, code, native_state=f"exit {code}", reason=SIGNAL_EXITS[code]
        )
    return JobStatus(job_id, JobState.FAILED, code, native_state=f"exit {code}")
