"""The batch-system adapter interface: pure functions from job specs and ids to command lines and back.

An adapter never opens a connection or a file on a remote host; transports run what it renders.
"""

from __future__ import annotations

import json
import re
import shlex
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from string import Template

from operators.hpc.load import Estimate, MachineLoad
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobStatus, Output

TEMPLATES = Path(__file__).resolve().parents[3] / "include" / "templates"
SECTION = "#--urgentflow-section--"


@cache
def template(name: str) -> Template:
    return Template((TEMPLATES / name).read_text())


@dataclass(frozen=True)
class JobRef:
    """A job being watched: its native id, the exit-code file its script writes and, for the jobs we
    submitted, its name. A batch system that lost jobs in a controller crash gives their ids to new jobs
    (Slurm restarts its numbering from its last saved state): a record of another name under the id is
    not this job, and is read as no record (the job is then judged by its exit file, or lost)."""

    job_id: str
    exit_file: str
    name: str | None = None

    def owns(self, record_name: str) -> bool:
        """Whether a batch-system record named ``record_name`` can be this job's."""
        return self.name is None or record_name == self.name


class BatchAdapter(ABC):
    """One batch system. Subclasses render scripts and commands and parse what the commands print."""

    name: str

    @abstractmethod
    def render_script(self, spec: JobSpec) -> str: ...

    @abstractmethod
    def submit_command(self, spec: JobSpec) -> str: ...

    @abstractmethod
    def parse_submit(self, stdout: str) -> str: ...

    @abstractmethod
    def status_command(self, jobs: Sequence[JobRef]) -> str:
        """ONE command that reports on every job in ``jobs``."""

    @abstractmethod
    def parse_status(self, stdout: str, jobs: Sequence[JobRef]) -> dict[str, JobStatus]:
        """Our view of each job; a job the batch system no longer knows is UNKNOWN."""

    @abstractmethod
    def cancel_command(self, job_ids: Sequence[str]) -> str: ...

    @abstractmethod
    def find_command(self, name: str, workdir: str) -> str:
        """A command printing the id of a live job named ``name`` (nothing when there is none)."""

    @abstractmethod
    def load_command(self) -> str:
        """ONE command summarising the machine: who we are, nodes/cores per partition, the queue."""

    @abstractmethod
    def parse_load(self, stdout: str) -> MachineLoad: ...

    def estimate_command(
        self, partition: str, cores: int, memory_mb: int | None, walltime_minutes: int
    ) -> str | None:
        """A dry-run submission telling when such a job would start; None when the system has none
        (selection then estimates from the queue)."""
        return None

    def parse_estimate(self, stdout: str) -> Estimate:
        raise NotImplementedError(f"{self.name} has no dry-run submission")

    def parse_find(self, stdout: str) -> str | None:
        ids = [line.strip() for line in stdout.splitlines() if line.strip().isdigit()]
        return ids[0] if ids else None

    def find_all_command(self, specs: Sequence[JobSpec]) -> str:
        """ONE command printing ``<name> <id>`` for each live job of ``specs`` (an ensemble's look-up).

        Default: every spec's ``find_command`` in turn; batch systems override it with one query."""
        return (
            "; ".join(
                f"{{ {self.find_command(s.name, s.workdir)}; }} 2>/dev/null | sed 's/^/{s.name} /'"
                for s in specs
            )
            or "true"
        )

    def parse_find_all(self, stdout: str) -> dict[str, str]:
        """name -> the first live job id printed for it."""
        found: dict[str, str] = {}
        for line in stdout.splitlines():
            name, _, job_id = line.strip().partition(" ")
            if job_id.strip().isdigit():
                found.setdefault(name, job_id.strip())
        return found

    def prepare_command(self, spec: JobSpec) -> str:
        """Create the work directory (before the script is uploaded there)."""
        return f"mkdir -p {shlex.quote(spec.workdir)}"

    def tail_command(self, path: str, lines: int = 20) -> str:
        return f"tail -n {int(lines)} {shlex.quote(path)} 2>/dev/null || true"

    def job_body(self, spec: JobSpec, launch: str = "") -> str:
        """The shell lines every adapter's script shares: env, setup, the quoted command, exit file."""
        return template("job_body.sh").substitute(
            name=spec.name,
            exit_file_q=shlex.quote(spec.exit_file),
            exit_tmp_q=shlex.quote(f"{spec.exit_file}.tmp"),
            workdir_q=shlex.quote(spec.workdir),
            exports="\n".join(f"export {k}={shlex.quote(v)}" for k, v in sorted(spec.environment.items())),
            setup="\n".join(spec.setup),
            launch=launch,
            command=shlex.join(spec.command),
            fetch=fetch_lines(spec),
            publish=publish_lines(spec),
            notice=notice_lines(spec),
        )


def curl_config(command: str, marker: str, settings: Mapping[str, str], after: str = "") -> str:
    """``command`` reading its curl settings (``curl -K -``) from a here-document: links, tokens and
    bodies never reach a command line. Every value is validated plain text (JobSpec, Upload, Download,
    Notice: no quote, backslash or line break; the notice's JSON body has its quotes escaped), so none
    can end its quotes or the document."""
    lines = "".join(f'{key} = "{value}"\n' for key, value in settings.items())
    return f"{command} <<'{marker}'{after}\n{lines}{marker}"


def fetch_lines(spec: JobSpec) -> str:
    """The script lines that fetch the job's ``downloads`` into its work directory (none without any)."""
    if not spec.downloads:
        return ""
    lines = [template("fetch.sh").substitute(cache_q=shlex.quote(spec.inputs_cache))]
    for d in spec.downloads:
        command = f"uf_fetch {shlex.quote(d.name)} {shlex.quote(d.sha256 or '')}"
        lines.append(curl_config(command, "URGENTFLOW_LINK", {"url": d.url}))
    return "\n".join(lines)


def publish_lines(spec: JobSpec) -> str:
    """The script lines that publish the job's ``uploads`` (none when it has none)."""
    if not spec.uploads:
        return ""
    lines = [template("publish.sh").substitute()]
    for upload in spec.uploads:
        command = f"uf_publish {shlex.quote(upload.name)}"
        lines.append(curl_config(command, "URGENTFLOW_LINK", {"url": upload.url}))
    return "\n".join(lines)


def notice_lines(spec: JobSpec) -> str:
    """The script line that sends the job's completion notice (none without one), after its exit file:
    best effort and quiet (a notice that fails shows nowhere; polling finds the end)."""
    notice = spec.notice
    if notice is None:
        return ""
    body = {"machine": notice.machine, "job": spec.name, "nonce": notice.nonce, "token": notice.token}
    data = json.dumps(body, separators=(",", ":")).replace('"', '\\"')
    return curl_config(
        "command -v curl >/dev/null 2>&1 && curl -fsS --connect-timeout 3 -m 5 -o /dev/null -K - >/dev/null 2>&1",
        "URGENTFLOW_NOTICE",
        {"url": notice.url, "header": "Content-Type: application/json", "data": data},
        after=" || true",
    )


def first_job_id(stdout: str, pattern: re.Pattern[str], tool: str) -> str:
    """The job id (group 1 of ``pattern``) from the first matching line of a submission's output."""
    for line in stdout.splitlines():
        match = pattern.match(line.strip())
        if match:
            return match.group(1)
    raise ValueError(f"{tool} printed no job id: {stdout.strip()[:200]!r}")


def exit_files_command(jobs: Sequence[JobRef]) -> str:
    """Print ``path:code`` for every exit file that exists (the judge of last resort)."""
    if not jobs:
        return "true"
    return "grep -H '' " + " ".join(shlex.quote(j.exit_file) for j in jobs) + " 2>/dev/null || true"


# How often a waiting status command looks for new exit files on the machine, and how long it lets the
# batch system take note of the job's end after its exit file appeared (the script writes it last).
WAIT_STEP_SECONDS = 0.2
WAIT_SETTLE_SECONDS = 0.3
WOKEN = "urgentflow-woken"  # on stderr, with the number of new exit files, when the wait was cut short


def wait_for_exit_files_command(jobs: Sequence[JobRef], seconds: float) -> str:
    """Wait on the machine up to ``seconds`` until one more of ``jobs``' exit files exists than at the
    start (POSIX sh, builtin file tests; one ``sleep`` per step). Prepended to a status command, it makes
    the poll return as soon as a job has ended instead of an interval later; then it says on stderr how
    many new exit files it saw (``parse_woken``)."""
    steps = max(1, int(seconds / WAIT_STEP_SECONDS))
    files = " ".join(shlex.quote(j.exit_file) for j in jobs)
    return (
        f"set -- {files}; "
        'uf_ended() { n=0; for f in "$@"; do [ -e "$f" ] && n=$((n+1)); done; }; '
        'uf_ended "$@"; n0=$n; i=0; '
        f'while [ $i -lt {steps} ]; do sleep {WAIT_STEP_SECONDS}; i=$((i+1)); uf_ended "$@"; '
        f"if [ $n -gt $n0 ]; then echo {WOKEN} $((n-n0)) >&2; sleep {WAIT_SETTLE_SECONDS}; break; fi; done; set --"
    )


def parse_woken(stderr: str) -> int:
    """How many new exit files cut the wait short (0: it lasted its whole time)."""
    found = re.search(rf"^{WOKEN} (\d+)$", stderr, re.MULTILINE)
    return int(found.group(1)) if found else 0


@dataclass(frozen=True)
class ExitFiles:
    """What the jobs' exit files say: each job's exit code, and the outputs it reported
    (``output <sha256> <size> <name>`` lines after the code)."""

    codes: dict[str, int]
    outputs: dict[str, tuple[Output, ...]]

    def with_outputs(self, statuses: dict[str, JobStatus]) -> dict[str, JobStatus]:
        """``statuses`` with each job's reported outputs attached, whichever source judged its state."""
        return {
            job_id: replace(status, outputs=self.outputs[job_id]) if job_id in self.outputs else status
            for job_id, status in statuses.items()
        }


def parse_exit_files(lines: Sequence[str], jobs: Sequence[JobRef]) -> ExitFiles:
    """Read the ``<exit file>:<line>`` lines :func:`exit_files_command` prints; lines of other files
    and malformed lines are ignored."""
    by_path = {j.exit_file: j.job_id for j in jobs}
    codes: dict[str, int] = {}
    outputs: dict[str, list[Output]] = {}
    for line in lines:
        path, _, text = line.rpartition(":")
        job_id = by_path.get(path)
        if job_id is None:
            continue
        words = text.split(" ")
        if text.strip().lstrip("-").isdigit():
            codes[job_id] = int(text)
        elif len(words) == 4 and words[0] == "output" and words[2].isdigit():
            outputs.setdefault(job_id, []).append(Output(words[3], words[1], int(words[2])))
    return ExitFiles(codes, {job_id: tuple(found) for job_id, found in outputs.items()})


def split_sections(stdout: str) -> list[list[str]]:
    sections: list[list[str]] = [[]]
    for line in stdout.splitlines():
        if line.startswith(SECTION):
            sections.append([])
        elif line.strip():
            sections[-1].append(line.rstrip())
    return sections
