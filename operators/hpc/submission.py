"""Submitting many jobs to one machine in a few remote commands (pure: commands in, parsed results out).

Every submission, one job or an ensemble, from a worker (``BatchHook``) or from the triggerer
(``operators.hpc.submitter``), goes through the same three steps, each ONE remote command for all jobs:

1. ``lookup_command``: create each work directory and look the job up by its name (the batch system's
   live jobs, then the job-id record an earlier try left and the "judged" mark of the try that consumed
   its end); ``parse_lookup`` decides per job: re-attach to a live or unjudged job, or submit.
2. ``submit_command``: write each new job's script (a quoted here-document) and submit it; a failure of
   one job is reported for that job and never stops the others.
3. ``record_command``: write each new job id to its record file, so a restart finds it even after the
   batch system forgot it.

A crash between 2 and 3 leaves a live job without a record: step 1 of the retry finds it by name.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from operators.hpc.adapters.base import SECTION, BatchAdapter, split_sections
from operators.hpc.spec import JobSpec

FAILED = "urgentflow-submit-failed"
# One remote command stays well below Linux's limit for one argument (128 KiB, `bash -c` locally) and
# sshd's packet size; a larger ensemble is submitted in several commands.
MAX_COMMAND_BYTES = 96 * 1024


class SubmissionError(RuntimeError):
    """One job could not be submitted (the others of its batch may have been)."""


@dataclass(frozen=True)
class Found:
    """A job a spec already has: ``why`` is "live" (the batch system runs it) or "unjudged"."""

    job_id: str
    why: str


def lookup_command(adapter: BatchAdapter, specs: Sequence[JobSpec]) -> str:
    """Four sections per spec: "prepared" (the work directory exists), live ids, record, judged mark."""
    q = shlex.quote
    parts = []
    for spec in specs:
        parts.append(
            f"{{ {adapter.prepare_command(spec)}; }} >/dev/null 2>&1 && echo prepared; echo '{SECTION}'; "
            f"{{ {adapter.find_command(spec.name, spec.workdir)}; }} 2>/dev/null; echo '{SECTION}'; "
            f"cat {q(spec.record_file)} 2>/dev/null; echo '{SECTION}'; "
            f"cat {q(spec.judged_file)} 2>/dev/null; echo '{SECTION}'"
        )
    return "; ".join(parts) + "; true"


def decide(
    adapter: BatchAdapter, live: Sequence[str], recorded: Sequence[str], judged: Sequence[str]
) -> Found | None:
    """A live job of that name, else a recorded job no try has judged yet, else None (submit)."""
    live_id = adapter.parse_find("\n".join(live))
    if live_id:
        return Found(live_id, "live")
    recorded_id = recorded[0].strip() if recorded else ""
    judged_id = judged[0].strip() if judged else ""
    if recorded_id.isdigit() and recorded_id != judged_id:
        return Found(recorded_id, "unjudged")
    return None


def parse_lookup(
    adapter: BatchAdapter, stdout: str, specs: Sequence[JobSpec]
) -> list[Found | SubmissionError | None]:
    """Per spec: the job to re-attach to, None to submit, or why its work directory could not be made."""
    sections = split_sections(stdout)
    if len(sections) < 4 * len(specs):
        raise ValueError(f"job lookup printed {len(sections)} sections for {len(specs)} jobs")
    results: list[Found | SubmissionError | None] = []
    for i, spec in enumerate(specs):
        prepared, live, recorded, judged = sections[4 * i : 4 * i + 4]
        if "prepared" not in prepared:
            results.append(SubmissionError(f"creating {spec.workdir} failed"))
        else:
            results.append(decide(adapter, live, recorded, judged))
    return results


def _heredoc(path: str, text: str) -> str:
    delimiter = "URGENTFLOW_EOF_" + hashlib.sha256(text.encode()).hexdigest()[:16]
    if delimiter in text:  # pragma: no cover - a script containing its own digest
        raise SubmissionError(f"cannot quote the script for {path}")
    return f"cat > {shlex.quote(path)} <<'{delimiter}'\n{text.rstrip(chr(10))}\n{delimiter}\n"


def submit_command(adapter: BatchAdapter, specs: Sequence[JobSpec]) -> str:
    """One section per spec: the submission's output, or ``FAILED <code>`` after it."""
    parts = []
    for spec in specs:
        parts.append(
            "( "
            + _heredoc(spec.script_path, adapter.render_script(spec))
            + f"chmod 750 {shlex.quote(spec.script_path)} && {adapter.submit_command(spec)}\n"
            + f") 2>&1 || echo \"{FAILED} $?\"\necho '{SECTION}'\n"
        )
    return "".join(parts) + "true\n"


def parse_submit(adapter: BatchAdapter, stdout: str, specs: Sequence[JobSpec]) -> list[str | SubmissionError]:
    """Per spec: the new job id, or what the batch system said when it refused the job."""
    sections = split_sections(stdout)
    results: list[str | SubmissionError] = []
    for i, spec in enumerate(specs):
        lines = sections[i] if i < len(sections) else []
        text = "\n".join(lines)
        if any(line.startswith(FAILED) for line in lines) or not lines:
            results.append(
                SubmissionError(f"submitting {spec.name} failed: {text.strip()[-500:] or 'no output'}")
            )
            continue
        try:
            results.append(adapter.parse_submit(text))
        except ValueError as exc:
            results.append(SubmissionError(f"submitting {spec.name}: {exc}"))
    return results


def record_command(submitted: Sequence[tuple[JobSpec, str]]) -> str:
    return (
        "; ".join(
            f"printf '%s\\n' {shlex.quote(job_id)} > {shlex.quote(spec.record_file)}"
            for spec, job_id in submitted
        )
        or "true"
    )


def chunks(adapter: BatchAdapter, specs: Sequence[JobSpec]) -> list[list[JobSpec]]:
    """The specs cut into groups whose submit command stays under ``MAX_COMMAND_BYTES``."""
    groups: list[list[JobSpec]] = [[]]
    size = 0
    for spec in specs:
        cost = len(adapter.render_script(spec)) + 512
        if groups[-1] and size + cost > MAX_COMMAND_BYTES:
            groups.append([])
            size = 0
        groups[-1].append(spec)
        size += cost
    return [g for g in groups if g]
