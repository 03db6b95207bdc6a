"""Submitting many jobs to one machine in a few remote commands (pure: commands in, parsed results out).

Every submission, one job or an ensemble, from a worker (``BatchHook``) or from the triggerer
(``operators.hpc.submitter``), goes through the same two steps, each ONE remote command for all jobs:

1. ``lookup_command``: the live jobs of all the names (one batch-system query), their work directories
   (one mkdir), then per job: the job-id record an earlier try left and the "judged" mark of the try that
   consumed its end; ``parse_lookup`` decides per job: re-attach to a live or unjudged job, or submit.
2. ``submit_command``: write each new job's script (one quoted word), submit it and write what
   the batch system answered to the job's record file in the same shell, so a restart finds the job
   even after the batch system forgot it; a failure of one job is reported for that job and never
   stops the others.

Two submitters of one job at once (a worker and a trigger, two triggerers, a member and the sibling that
submits ahead for it) never make two jobs: each job's submission holds a lock on the machine (``flock``
on ``<record>.lock``) and first checks that the record is still the one its look-up saw; when
it is not, another submitter got there first, and the job it recorded is re-attached to instead.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass

from operators.hpc.adapters.base import SECTION, BatchAdapter, split_sections
from operators.hpc.spec import JobSpec
from operators.hpc.transport import MAX_COMMAND_BYTES, fitting

FAILED = "urgentflow-submit-failed"


class SubmissionError(RuntimeError):
    """One job could not be submitted (the others of its batch may have been)."""


EXISTING = "urgentflow-submit-existing"
JUDGED = "urgentflow-judged-mark"


@dataclass(frozen=True)
class Found:
    """A job a spec already has: ``why`` is "live" (the batch system runs it) or "unjudged"."""

    job_id: str
    why: str


@dataclass(frozen=True)
class Absent:
    """No job to re-attach to: submit one. ``seen`` is the record file as the look-up saw it (its content
    quoted by bash's ``printf %q``; empty when there was none: the job was never submitted)."""

    seen: str

    @property
    def never_submitted(self) -> bool:
        return not self.seen


# Both scripts go on stdin (no job script or environment value on a command line or in a log line) and run
# in bash: each job's look-up and record check are bash builtins (``read``, ``printf -v``), no process per
# job; an ensemble's look-up is one mkdir and one batch-system query.
SCRIPT = "bash -s"
# ``$v``: the whole of file $1 (empty when there is none); ``$s``: that content quoted on one line, the
# record as a look-up saw it (empty when there is no file).
_READ = (
    'uf_read() { v=; s=; [ -f "$1" ] || return 0; IFS= read -r -d \'\' v < "$1"; printf -v s \'%q\' "$v"; }\n'
)


def lookup_command(adapter: BatchAdapter, specs: Sequence[JobSpec]) -> str:
    """The look-up script (run by ``SCRIPT``): the live jobs of all specs (one batch-system query), then 4
    sections per spec: "prepared" (its work directory exists), its job-id record, its judged mark, the
    record as seen (``Absent.seen``)."""
    q = shlex.quote
    parts = [
        f"{{ {adapter.find_all_command(specs)}; }} 2>/dev/null; echo '{SECTION}'\n",
        "mkdir -p -- " + " ".join(q(spec.workdir) for spec in specs) + " >/dev/null 2>&1\n",
        _READ,
    ]
    for spec in specs:
        parts.append(
            f"[ -d {q(spec.workdir)} ] && echo prepared; echo '{SECTION}'; "
            f"uf_read {q(spec.record_file)}; r=$s; [ -n \"$v\" ] && printf '%s\\n' \"$v\"; echo '{SECTION}'; "
            f"uf_read {q(spec.judged_file)}; [ -n \"$v\" ] && printf '%s\\n' \"$v\"; echo '{SECTION}'; "
            f"printf '%s\\n' \"$r\"; echo '{SECTION}'\n"
        )
    return "".join(parts) + "true\n"


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
) -> list[Found | Absent | SubmissionError]:
    """Per spec: the job to re-attach to, ``Absent`` to submit, or why its work directory could not be made."""
    sections = split_sections(stdout)
    if len(sections) < 1 + 4 * len(specs):
        raise ValueError(f"job lookup printed {len(sections)} sections for {len(specs)} jobs")
    live = adapter.parse_find_all("\n".join(sections[0]))
    results: list[Found | Absent | SubmissionError] = []
    for i, spec in enumerate(specs):
        prepared, recorded, judged, seen = sections[1 + 4 * i : 5 + 4 * i]
        if "prepared" not in prepared:
            results.append(SubmissionError(f"creating {spec.workdir} failed"))
        else:
            found = decide(adapter, live.get(spec.name), recorded, judged)
            results.append(found or Absent(" ".join(seen).strip()))
    return results


def _write(path: str, text: str) -> str:
    """Write ``text`` to ``path`` with bash's own ``printf`` (a quoted word: no process, no here-document)."""
    return f"printf '%s\\n' {shlex.quote(text.rstrip(chr(10)))} > {shlex.quote(path)} && "


def submit_command(adapter: BatchAdapter, specs: Sequence[JobSpec], seen: Sequence[Absent]) -> str:
    """The submit script (run by ``SCRIPT``; its stdin: nothing in it may read more, every block reads
    /dev/null). One section per spec: the submission's output, or ``FAILED <code>`` after it, or
    ``EXISTING`` with the record and judged mark another submitter left since the look-up (``seen``: what
    the look-up saw, per spec). The output is also the job's record file, moved in place by the same shell
    right after the submission, under the job's lock: a crash of ours after this command started leaves
    no job without its record. (Captured in a file, not with ``$(...)``: a local job started in the
    background there never ran.) Every file it writes is its owner's alone from
    its first byte (``umask 077``): a job script may hold the job's presigned links."""
    q = shlex.quote
    parts = ["umask 077\n", _READ]
    for spec, absent in zip(specs, seen, strict=True):
        out, record, script = q(f"{spec.record_file}.submitting"), q(spec.record_file), q(spec.script_path)
        parts.append(
            "{ if command -v flock >/dev/null 2>&1 && ! flock -w 60 9; then "
            + f'echo "{FAILED} lock"; '
            + f'else uf_read {record}; if [ "$s" != {q(absent.seen)} ]; then '
            + f"echo '{EXISTING}'; [ -n \"$v\" ] && printf '%s\\n' \"$v\"; echo '{JUDGED}'; "
            + f'uf_read {q(spec.judged_file)}; [ -n "$v" ] && printf \'%s\\n\' "$v"; '
            + f"else ( if [ -e {script} ]; then rm -f {script}; fi; "
            + _write(spec.script_path, adapter.render_script(spec))
            + f"{adapter.submit_command(spec)}\n"
            + f") < /dev/null > {out} 2>&1; rc=$?; uf_read {out}; printf '%s\\n' \"$v\"; "
            + f'if [ "$rc" = 0 ]; then mv -f {out} {record}; else rm -f {out}; echo "{FAILED} $rc"; fi; '
            + f"fi; fi; }} 9> {q(spec.record_file + '.lock')}\n"
            + f"echo '{SECTION}'\n"
        )
    return "".join(parts) + "true\n"


def parse_submit(
    adapter: BatchAdapter, stdout: str, specs: Sequence[JobSpec]
) -> list[str | Found | SubmissionError]:
    """Per spec: the new job id, the job another submitter made meanwhile, or what the batch system said
    when it refused the job."""
    sections = split_sections(stdout)
    results: list[str | Found | SubmissionError] = []
    for i, spec in enumerate(specs):
        lines = sections[i] if i < len(sections) else []
        text = "\n".join(lines)
        if lines and lines[0] == EXISTING:
            mark = lines.index(JUDGED) if JUDGED in lines else len(lines)
            found = decide(adapter, None, lines[1:mark], lines[mark + 1 :])
            results.append(
                found
                or SubmissionError(f"submitting {spec.name}: another submission changed its record meanwhile")
            )
            continue
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


# The submit script goes on stdin, not on a command line: only its look-up command must fit one (the
# script is bounded so that one command of a batch stays well within the transport's timeout).
MAX_SCRIPT_BYTES = 2_000_000


def chunks(adapter: BatchAdapter, specs: Sequence[JobSpec]) -> list[Sequence[JobSpec]]:
    """The specs cut into groups whose look-up fits one command line and whose submit script (stdin) fits
    ``MAX_SCRIPT_BYTES``."""
    scale = MAX_SCRIPT_BYTES // MAX_COMMAND_BYTES
    return fitting(
        specs,
        lambda group: max(
            len(submit_command(adapter, group, [Absent("0000000000 00000000")] * len(group)).encode())
            // scale,
            len(lookup_command(adapter, group).encode()),
        ),
    )
