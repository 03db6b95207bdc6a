"""Grid Engine (SGE / Son of Grid Engine 8.1): qsub / qstat / qacct / qdel. Pure: strings in, strings out.

Real outputs of every command used here are in tests/unit/fixtures/gridengine (see its README).

What Grid Engine tells, and how it becomes ours:

- ``qstat -u USER`` lists queued and running jobs: id, priority, name (cut to 10 characters), user,
  state letters (``qw``, ``hqw``, ``r``, ``t``, ``dr``, ``Eqw``, ``s``...), ...
- a job that left qstat is judged from its accounting record (``qacct -j ID``): ``failed`` (0, or a
  code and its text, e.g. ``37  : qmaster enforced h_rt, h_cpu, or h_vmem limit`` for walltime,
  ``100 : assumedly after job`` for a job killed by ``qdel``) and ``exit_status`` (137 when killed);
  ``category`` holds the resource requests (``-l h_rt=60``);
- a job deleted while still pending gets NO accounting record: it is UNKNOWN (the base contract);
- ``Eqw`` jobs (the job could not even start: missing work dir, unwritable output file) stay in the
  queue until deleted; we call them FAILED, with the ``error reason`` of ``qstat -j``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

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
from operators.hpc.load import MachineLoad, PartitionLoad
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState, JobStatus

PARALLEL_ENVIRONMENT = "smp"  # configured by scripts/testbed.d/gridengine.sh ($pe_slots: one host)
QSTAT_FAILED = "#urgentflow-qstat-failed"
FAILED_ENFORCED_LIMIT = 37  # "qmaster enforced h_rt, h_cpu, or h_vmem limit"
FAILED_KILLED = 100  # "assumedly after job": killed by a signal (qdel)
_SUBMITTED = re.compile(r"^(\d+)(\.\S+)?$")
_JOB_LINE = re.compile(r"^\s*(\d+)\s+\S+\s+(\S+)\s+(\S+)\s+(\S+)\s+")
_ERROR_REASON = re.compile(r"^error reason\s+\d+:\s*(.*)$")
_REQUEST = re.compile(r"-l\s+(\S+)")
_DURATION = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+)$")
# qstat -f queue instance line: name, qtype, resv/used/total, load, arch, [states]
_QUEUE_LINE = re.compile(r"^(\S+)@(\S+)\s+\S+\s+(\d+)/(\d+)/(\d+)\s+\S+\s+\S+\s*(\S*)\s*$")
_QUEUE_DOWN_STATES = set("uEdDsSCcao")  # unknown, error, disabled, suspended, calendar, alarm, orphaned


def _ids(jobs: Sequence[JobRef] | Sequence[str]) -> list[str]:
    ids = [j.job_id if isinstance(j, JobRef) else j for j in jobs]
    for job_id in ids:
        if not job_id.isdigit():
            raise ValueError(f"not a Grid Engine job id: {job_id!r}")
    return ids


def map_state(letters: str) -> tuple[JobState, str]:
    """Our state and a reason for qstat's state letters (``qw``, ``hqw``, ``r``, ``dr``, ``Eqw``...)."""
    if not letters:
        return JobState.UNKNOWN, ""
    if "E" in letters:
        return JobState.FAILED, "job in error state"
    if "d" in letters:
        return JobState.RUNNING, "deletion in progress"
    if any(c in letters for c in "sST"):
        return JobState.PENDING, "suspended"
    if "r" in letters or "t" in letters:
        return JobState.RUNNING, "restarted" if "R" in letters else ""
    if "h" in letters:
        return JobState.PENDING, "held"
    if "q" in letters or "w" in letters:
        return JobState.PENDING, ""
    return JobState.UNKNOWN, f"unexpected qstat state {letters!r}"


@dataclass(frozen=True)
class Accounting:
    """The fields of one ``qacct -j`` record that judge a job's end."""

    job_id: str
    failed: int
    failed_text: str
    exit_status: int | None
    wallclock_seconds: float | None
    requests: dict[str, str]


def _seconds(value: str) -> float | None:
    """``60``, ``0:1:0``, ``00:01:00`` -> 60; qacct's ``6s``/``6.020s`` -> 6.0."""
    value = value.strip().removesuffix("s")
    try:
        return float(value)
    except ValueError:
        pass
    match = _DURATION.match(value)
    if not match:
        return None
    parts = [int(p) for p in match.groups() if p is not None]
    total = 0
    for part in parts:
        total = total * 60 + part
    return float(total)


def parse_qacct(lines: Sequence[str]) -> dict[str, Accounting]:
    """Records of ``qacct -j`` (each starts with a ``=====`` line); the LAST record of an id wins (a job
    that was re-run, e.g. after an error state was cleared, has one record per run)."""
    records: list[dict[str, str]] = []
    for line in lines:
        if line.startswith("====="):
            records.append({})
            continue
        if not records:
            continue
        key, _, value = line.strip().partition(" ")
        if key:
            records[-1][key] = value.strip()
    result: dict[str, Accounting] = {}
    for rec in records:
        job_id = rec.get("jobnumber", "")
        if not job_id.isdigit():
            continue
        failed_code, _, failed_text = rec.get("failed", "0").partition(":")
        status_word = rec.get("exit_status", "").split()
        requests: dict[str, str] = {}
        for request in _REQUEST.findall(rec.get("category", "")):
            for item in request.split(","):
                name, _, value = item.partition("=")
                requests[name] = value
        result[job_id] = Accounting(
            job_id=job_id,
            failed=int(failed_code.strip()) if failed_code.strip().isdigit() else -1,
            failed_text=failed_text.strip(),
            exit_status=int(status_word[0]) if status_word and status_word[0].isdigit() else None,
            wallclock_seconds=_seconds(rec.get("ru_wallclock", "")),
            requests=requests,
        )
    return result


def parse_qstat(lines: Sequence[str]) -> dict[str, tuple[str, str]]:
    """``qstat -u USER`` job lines -> {id: (state letters, name as shown, cut to 10 characters)}."""
    jobs: dict[str, tuple[str, str]] = {}
    for line in lines:
        match = _JOB_LINE.match(line)
        if match:
            job_id, name, _user, state = match.groups()
            jobs[job_id] = (state, name)
    return jobs


def parse_error_reasons(lines: Sequence[str]) -> dict[str, str]:
    """``qstat -j ID,ID | grep`` of ``job_number:`` and ``error reason N:`` lines."""
    reasons: dict[str, str] = {}
    current = ""
    for line in lines:
        if line.startswith("job_number:"):
            current = line.split(":", 1)[1].strip()
            continue
        match = _ERROR_REASON.match(line)
        if match and current:
            reasons[current] = (reasons.get(current, "") + " " + match.group(1)).strip()
    return reasons


def judge_accounting(acct: Accounting, file_code: int | None) -> JobStatus:
    code = acct.exit_status
    native = f"failed={acct.failed} exit_status={code}"
    if acct.failed == 0:
        if code == 0:
            return JobStatus(acct.job_id, JobState.COMPLETED, 0, native_state=native)
        reason = ""
        if "h_vmem" in acct.requests:
            reason = f"exit {code} with h_vmem={acct.requests['h_vmem']}: allocations over it fail"
        return JobStatus(acct.job_id, JobState.FAILED, code, native_state=native, reason=reason)
    if acct.failed == FAILED_ENFORCED_LIMIT or "enforced" in acct.failed_text:
        h_rt = _seconds(acct.requests.get("h_rt", "")) if "h_rt" in acct.requests else None
        used = acct.wallclock_seconds
        if h_rt is not None and (used is None or used + 1 >= h_rt or "h_vmem" not in acct.requests):
            return JobStatus(
                acct.job_id, JobState.TIMEOUT, code, native_state=native, reason=acct.failed_text
            )
        if "h_vmem" in acct.requests:
            return JobStatus(
                acct.job_id, JobState.OUT_OF_MEMORY, code, native_state=native, reason=acct.failed_text
            )
        return JobStatus(acct.job_id, JobState.FAILED, code, native_state=native, reason=acct.failed_text)
    if acct.failed == FAILED_KILLED:
        return JobStatus(acct.job_id, JobState.CANCELLED, code, native_state=native, reason=acct.failed_text)
    # the job never ran its script properly (work dir, output file, prolog...): no exit code of its own
    return JobStatus(
        acct.job_id, JobState.FAILED, file_code, native_state=native, reason=acct.failed_text or "failed"
    )


class GridEngineAdapter(BatchAdapter):
    name = "gridengine"

    @staticmethod
    def held_letters(letters: str) -> bool:
        """qstat's letters of a job on a hold (``hqw``: user, operator or system hold)."""
        return "h" in letters

    def render_script(self, spec: JobSpec) -> str:
        if spec.nodes != 1:
            raise ValueError(
                f"gridengine adapter: {spec.nodes} nodes requested; jobs run on one host "
                f"(slots through the '{PARALLEL_ENVIRONMENT}' parallel environment)"
            )
        slots = spec.tasks * spec.cpus_per_task
        optional = ""
        if slots > 1:
            optional += f"#$ -pe {PARALLEL_ENVIRONMENT} {slots}\n"
        if spec.partition:
            optional += f"#$ -q {spec.partition}\n"
        if spec.account:
            optional += f"#$ -A {spec.account}\n"
        if spec.memory_mb is not None:
            # h_vmem is per slot (the address-space limit of the job's processes)
            optional += f"#$ -l h_vmem={-(-spec.memory_mb // slots)}M\n"
        return template("gridengine.sh").substitute(
            name=spec.name,
            workdir=spec.workdir,
            stdout=spec.stdout,
            stderr=spec.stderr,
            walltime_seconds=spec.walltime_minutes * 60,
            optional=optional,
            body=self.job_body(spec),
        )

    def submit_command(self, spec: JobSpec) -> str:
        return f"qsub -terse {shlex.quote(spec.script_path)}"

    def parse_submit(self, stdout: str) -> str:
        return first_job_id(stdout, _SUBMITTED, "qsub")

    def status_command(self, jobs: Sequence[JobRef]) -> str:
        """qstat of our user's jobs; qacct only for the watched jobs qstat no longer lists; qstat -j of
        the jobs in an error state (their reason); the exit files. One command, four sections."""
        ids = " ".join(_ids(jobs))
        return (
            f'if q=$(qstat -u "$(id -un)" 2>/dev/null); then printf "%s\\n" "$q"; '
            f"else echo '{QSTAT_FAILED}'; q=''; fi; echo '{SECTION}'; "
            'live=" $(printf \'%s\\n\' "$q" | awk \'NR>2{printf "%s ", $1}\')"; '
            f'for j in {ids}; do case "$live" in *" $j "*) ;; *) qacct -j "$j" 2>/dev/null ;; esac; done; '
            f"echo '{SECTION}'; "
            "e=$(printf '%s\\n' \"$q\" | awk 'NR>2 && $5 ~ /E/ {printf \"%s,\", $1}'); "
            'if [ -n "$e" ]; then qstat -j "${e%,}" 2>/dev/null | grep -E \'^(job_number|error reason)\'; fi; '
            f"echo '{SECTION}'; " + exit_files_command(jobs)
        )

    def parse_status(self, stdout: str, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        sections = [*split_sections(stdout), [], [], [], []]
        qstat_failed = QSTAT_FAILED in sections[0]
        queue = parse_qstat(sections[0])
        acct = parse_qacct(sections[1])
        reasons = parse_error_reasons(sections[2])
        exit_files = parse_exit_files(sections[3], jobs)
        result: dict[str, JobStatus] = {}
        for job in jobs:
            job_id = job.job_id
            file_code = exit_files.codes.get(job_id)
            if job_id in queue:
                letters = queue[job_id][0]
                state, reason = map_state(letters)
                if state is JobState.FAILED:
                    reason = reasons.get(job_id, reason)
                held = state is JobState.PENDING and self.held_letters(letters)
                result[job_id] = JobStatus(
                    job_id, state, None, native_state=letters, reason=reason, held=held
                )
            elif job_id in acct:
                result[job_id] = judge_accounting(acct[job_id], file_code)
            elif file_code is not None:
                state = JobState.COMPLETED if file_code == 0 else JobState.FAILED
                result[job_id] = JobStatus(job_id, state, file_code, native_state="exit-file")
            else:
                why = "qstat failed (qmaster unreachable?)" if qstat_failed else "not known to qstat or qacct"
                result[job_id] = JobStatus(job_id, JobState.UNKNOWN, None, native_state="", reason=why)
        return exit_files.with_outputs(result)

    def cancel_command(self, job_ids: Sequence[str]) -> str:
        return f"qdel {' '.join(_ids(job_ids))}"

    def find_command(self, name: str, workdir: str) -> str:
        """Our live job of that exact name: ``qstat -r`` prints the full name under each job line (the
        job line cuts it to 10 characters). Jobs in an error state (E) or being deleted (d) are not
        live: re-attaching to them would only repeat their failure."""
        return (
            f'qstat -u "$(id -un)" -r 2>/dev/null | awk -v n={shlex.quote(name)} '
            "'$1 ~ /^[0-9]+$/ {id=$1; st=$5} "
            '$1 == "Full" && $2 == "jobname:" && $3 == n && st !~ /[Ed]/ {print id}\''
        )

    def find_all_command(self, specs: Sequence[JobSpec]) -> str:
        """``find_command`` for every spec in one ``qstat -r``: ``<name> <id>`` per live job."""
        if not specs:
            return "true"
        names = shlex.quote(" ".join(s.name for s in specs))
        return (
            f'qstat -u "$(id -un)" -r 2>/dev/null | awk -v names={names} '
            '\'BEGIN {n = split(names, a, " "); for (i = 1; i <= n; i++) want[a[i]] = 1} '
            "$1 ~ /^[0-9]+$/ {id=$1; st=$5} "
            '$1 == "Full" && $2 == "jobname:" && ($3 in want) && st !~ /[Ed]/ {print $3, id}\''
        )

    def load_command(self) -> str:
        return f"id -un; echo '{SECTION}'; qstat -f -u '*' 2>/dev/null"

    def parse_load(self, stdout: str) -> MachineLoad:
        """``qstat -f -u '*'``: queue instances (queue@host, used/total slots, states) with their
        running jobs under them, then the pending jobs. A queue is a partition; a host one node."""
        user_lines, body = ([*split_sections(stdout), [], []])[:2]
        load = MachineLoad(user=user_lines[0].strip() if user_lines else "")
        current: PartitionLoad | None = None
        pending = False
        for line in body:
            if "PENDING JOBS" in line:
                pending, current = True, None
                continue
            queue_match = _QUEUE_LINE.match(line)
            if queue_match and not pending:
                qname, _host, _resv, used, total, states = queue_match.groups()
                current = load.partitions.setdefault(qname, PartitionLoad(qname))
                down = bool(set(states) & _QUEUE_DOWN_STATES)
                current.nodes_total += 1
                current.cores_total += int(total)
                current.cores_allocated += int(used)
                if down:
                    current.nodes_down += 1
                else:
                    current.cores_idle += int(total) - int(used)
                    current.nodes_idle += int(used) == 0
                current.available = current.nodes_total > current.nodes_down
                continue
            job = _JOB_LINE.match(line)
            if not job:
                continue
            fields = line.split()
            user, slots = job.group(3), fields[-1] if fields[-1].isdigit() else "1"
            ours = user == load.user
            if pending:
                load.jobs_pending += 1
                load.ours_pending += ours
                # plain qstat does not say which queue a pending job asked for: count it everywhere
                for part in load.partitions.values():
                    part.jobs_pending += 1
                    part.cores_pending += int(slots)
            elif current is not None:
                load.jobs_running += 1
                load.ours_running += ours
                current.jobs_running += 1
        return load
