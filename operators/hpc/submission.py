"""Submitting many jobs to one machine in a few remote commands (pure: commands in, parsed results out).

Every submission, one job or an ensemble, from a worker (``BatchHook``) or from the triggerer
(``operators.hpc.submitter``), goes through the same two steps, each ONE remote command for all jobs:

1. ``lookup_command``: the live jobs of all the names (one batch-system query), then per job: create its
   work directory, read the job-id record an earlier try left and the "judged" mark of the try that
   consumed its end; ``parse_lookup`` decides per job: re-attach to a live or unjudged job, or submit.
2. ``submit_command`` (a script run by ``bash -s`` from stdin, so no job script or environment value reaches
   a command line or a log): write each new job's script (a quoted here-document), submit it and write what
   the batch system answered to the job's record file in the same shell, so a restart finds the job
   even after the batch system forgot it; a failure of one job is reported for that job and never
   stops the others.
"""

from __future__ import annotations

import hashlib
import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from operators.hpc.adapters.base import SECTION, BatchAdapter, split_sections
from operators.hpc.spec import JobSpec
from operators.hpc.transport import fitting

FAILED = "urgentflow-submit-failed"


class SubmissionError(RuntimeError):
    """One job could not be submitted (the others of its batch may have been)."""


@dataclass(frozen=True)
class Found:
    """A job a spec already has: ``why`` is "live" (the batch system runs it) or "unjudged"."""

    job_id: str
    why: str


def lookup_command(adapter: BatchAdapter, specs: Sequence[JobSpec]) -> str:
    """The live jobs of all specs (one batch-system query), then 3 sections per spec: "prepared"
    (its work directory exists), its job-id record, its judged mark."""
    q = shlex.quote
    parts = [f"{{ {adapter.find_all_command(specs)}; }} 2>/dev/null; echo '{SECTION}'"]
    for spec in specs:
        parts.append(
            f"{{ {adapter.prepare_command(spec)}; }} >/dev/null 2>&1 && echo prepared; echo '{SECTION}'; "
            f"cat {q(spec.record_file)} 2>/dev/null; echo '{SECTION}'; "
            f"cat {q(spec.judged_file)} 2>/dev/null; echo '{SECTION}'"
        )
    return "; ".join(parts) + "; true"


def decide(
    adapter: BatchAdapter, live_id: str | None, recorded: Sequence[str], judged: Sequence[str]
) -> Found | None:
    """A live job of that name, else a recorded job no try has judged yet, else None (submit)."""
    if live_id:
        return Found(live_id, "live")
    try:
        recorded_id = adapter.parse_submit("\n".join(recorded)) if recorded else ""
    except ValueError:  # a record cut short: the live look-up is all there is
        recorded_id = ""
    judged_id = judged[0].strip() if judged else ""
    if recorded_id and recorded_id != judged_id:
        return Found(recorded_id, "unjudged")
    return None


def parse_lookup(
    adapter: BatchAdapter, stdout: str, specs: Sequence[JobSpec]
) -> list[Found | SubmissionError | None]:
    """Per spec: the job to re-attach to, None to submit, or why its work directory could not be made."""
    sections = split_sections(stdout)
    if len(sections) < 1 + 3 * len(specs):
        raise ValueError(f"job lookup printed {len(sections)} sections for {len(specs)} jobs")
    live = adapter.parse_find_all("\n".join(sections[0]))
    results: list[Found | SubmissionError | None] = []
    for i, spec in enumerate(specs):
        prepared, recorded, judged = sections[1 + 3 * i : 4 + 3 * i]
        if "prepared" not in prepared:
            results.append(SubmissionError(f"creating {spec.workdir} failed"))
        else:
            results.append(decide(adapter, live.get(spec.name), recorded, judged))
    return results


def _heredoc(path: str, text: str) -> str:
    delimiter = "URGENTFLOW_EOF_" + hashlib.sha256(text.encode()).hexdigest()[:16]
    if delimiter in text:  # pragma: no cover - a script containing its own digest
        raise SubmissionError(f"cannot quote the script for {path}")
    return f"cat > {shlex.quote(path)} <<'{delimiter}'\n{text.rstrip(chr(10))}\n{delimiter}\n"


SUBMIT = "bash -s"  # the submit script goes on stdin: no job script, no environment in a log line


def submit_command(adapter: BatchAdapter, specs: Sequence[JobSpec]) -> str:
    """The script ``SUBMIT`` reads on stdin (its stdin: nothing in it may read more; every block reads
    /dev/null). One section per spec: the submission's output, or ``FAILED <code>`` after it. The output is also
    the job's record file, moved in place by the same shell right after the submission: a crash of
    ours after this command started leaves no job without its record. (Captured in a file, not with
    ``$(...)``: a local job started in the background there, after a here-document, never ran.)"""
    q = shlex.quote
    parts = []
    for spec in specs:
        out = q(f"{spec.record_file}.submitting")
        parts.append(
            "( "
            + _heredoc(spec.script_path, adapter.render_script(spec))
            + f"chmod 750 {q(spec.script_path)} && {adapter.submit_command(spec)}\n"
            + f") < /dev/null > {out} 2>&1; rc=$?; cat {out}; "
            + f'if [ "$rc" = 0 ]; then mv -f {out} {q(spec.record_file)}; else rm -f {out}; echo "{FAILED} $rc"; fi\n'
            + f"echo '{SECTION}'\n"
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


def chunks(adapter: BatchAdapter, specs: Sequence[JobSpec]) -> list[Sequence[JobSpec]]:
    """The specs cut into groups whose look-up and submit commands both fit one command line."""
    return fitting(
        specs,
        lambda group: max(
            len(submit_command(adapter, group).encode()), len(lookup_command(adapter, group).encode())
        ),
    )
