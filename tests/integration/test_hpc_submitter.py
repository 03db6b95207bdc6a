"""Batched submission (the triggerer's per-machine submitter) against the real batch systems over sshd."""

from __future__ import annotations

import asyncio
import logging
import uuid

import pytest

from operators.hpc import submission
from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook
from operators.hpc.poller import get_poller
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState
from operators.hpc.submission import SubmissionError
from operators.hpc.submitter import get_submitter

pytestmark = pytest.mark.integration


def specs_for(hook: BatchHook, count: int, **kw: object) -> list[JobSpec]:
    tag = uuid.uuid4().hex[:8]
    kw.setdefault("partition", hook.machine.default_partition)
    return [
        JobSpec(
            name=f"uf-sub-{tag}-{i}",
            # a quote, a dollar and a would-be here-document end in the command: all stay data
            command=[
                "bash",
                "-c",
                f'sleep {4 if i < 3 else 0}; echo "member $1 it\'s $HOME"',
                "member",
                f"{i} URGENTFLOW_EOF_x",
            ],
            workdir=f"{hook.machine.workdir}/tests/uf-sub-{tag}-{i}",
            **kw,  # type: ignore[arg-type]
        )
        for i in range(count)
    ]


async def submit_all(hook: BatchHook, specs: list[JobSpec]) -> tuple[list[object], int]:
    submitter = get_submitter(hook.machine.connection, hook.machine.batch_system)
    before = submitter.commands
    results = await asyncio.gather(*(submitter.submit(s) for s in specs), return_exceptions=True)
    return list(results), submitter.commands - before


@pytest.mark.parametrize("machine", ["alpha", "gamma", "local"])
def test_an_ensemble_goes_out_in_two_commands_and_a_second_round_re_attaches(machine: str) -> None:
    hook = BatchHook(machine)
    specs = specs_for(hook, 12)

    async def scenario() -> None:
        first, commands = await submit_all(hook, specs)
        assert commands == 2, "the look-up, then scripts + submissions + id records: one command each for all"
        assert all(isinstance(r, tuple) and r[1] is False for r in first), first
        ids = [r[0] for r in first]  # type: ignore[index]
        assert len(set(ids)) == 12
        again, commands = await submit_all(hook, specs)  # a triggerer restart runs every trigger again
        assert commands == 1 and again == [(job_id, True) for job_id in ids], "re-attached, nothing new"
        # found by their names among the batch system's live jobs (one query for all), not only by record
        assert [hook.find(s) for s in specs[:3]] == [(job_id, "live") for job_id in ids[:3]]
        poller = get_poller(hook.machine.connection, hook.machine.batch_system, 1.0)
        statuses = await asyncio.wait_for(
            asyncio.gather(*(poller.watch(JobRef(i, s.exit_file)) for i, s in zip(ids, specs, strict=True))),
            300,
        )
        assert {s.state for s in statuses} == {JobState.COMPLETED}

    asyncio.run(scenario())
    assert hook.tail(specs[3].stdout).strip().startswith("member 3 URGENTFLOW_EOF_x it's /")


def test_a_refused_job_fails_alone() -> None:
    hook = BatchHook("alpha")
    good = specs_for(hook, 2)
    bad = specs_for(hook, 1, partition="no-such-partition")

    async def scenario() -> list[object]:
        results, commands = await submit_all(hook, [good[0], *bad, good[1]])
        assert commands == 2
        return results

    first, refused, second = asyncio.run(scenario())
    assert isinstance(first, tuple) and isinstance(second, tuple)
    assert isinstance(refused, SubmissionError) and "no-such-partition" in str(refused), refused
    hook.cancel([first[0], second[0]])


def test_no_job_script_or_environment_value_reaches_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    """Scripts go to ``bash -s`` on stdin, from a worker (BatchHook) and from the triggerer (submitter)."""
    caplog.set_level(logging.DEBUG)
    hook = BatchHook("alpha")
    secret = f"s3cr3t-{uuid.uuid4().hex}"
    [from_worker] = specs_for(hook, 1, environment={"TOKEN": secret})
    [from_triggerer] = specs_for(hook, 1, environment={"TOKEN": secret})
    job_id, _ = hook.submit(from_worker)
    (other,), _ = asyncio.run(submit_all(hook, [from_triggerer]))
    assert isinstance(other, tuple)
    assert secret not in caplog.text and "#SBATCH" not in caplog.text
    hook.cancel([job_id, other[0]])


@pytest.mark.parametrize("machine", ["alpha", "gamma"])
def test_submitters_racing_for_the_same_jobs_make_one_job_each(machine: str) -> None:
    """A worker and a trigger (or two triggerers, or a member and the sibling submitting ahead for it) that
    both looked the jobs up before either submitted: the second finds the first's job under the lock."""
    hook = BatchHook(machine)
    specs = specs_for(hook, 3)
    lookup = submission.lookup_command(hook.adapter, specs)
    out = hook.transport.run(submission.SCRIPT, stdin=lookup).check("job lookup").stdout
    seen = submission.parse_lookup(hook.adapter, out, specs)
    assert all(isinstance(s, submission.Absent) and s.never_submitted for s in seen), seen
    script = submission.submit_command(hook.adapter, specs, seen)  # type: ignore[arg-type]
    first = hook.transport.run(submission.SCRIPT, stdin=script).check("first submission").stdout
    second = hook.transport.run(submission.SCRIPT, stdin=script).check("second submission").stdout
    ids = submission.parse_submit(hook.adapter, first, specs)
    assert all(isinstance(i, str) for i in ids), ids
    assert submission.parse_submit(hook.adapter, second, specs) == [
        submission.Found(str(i), "unjudged") for i in ids
    ]
    live = hook.transport.run(hook.adapter.find_all_command(specs)).check("find").stdout
    assert sorted(hook.adapter.parse_find_all(live).values()) == sorted(map(str, ids)), "one job per name"
    hook.cancel([str(i) for i in ids])


def test_a_spec_submitted_ahead_is_only_ever_a_first_submission() -> None:
    hook = BatchHook("alpha")
    fresh, judged = specs_for(hook, 2)
    job_id, _ = hook.submit(judged)
    hook.cancel([job_id])
    hook.mark_judged(judged.workdir, judged.name, job_id)  # its task judged it: the retry is the task's own

    async def scenario() -> list[object]:
        submitter = get_submitter(hook.machine.connection, hook.machine.batch_system)
        return list(await asyncio.gather(submitter.submit_ahead(fresh), submitter.submit_ahead(judged)))

    first, left_alone = asyncio.run(scenario())
    assert isinstance(first, tuple) and first[1] is False
    assert left_alone is None
    assert hook.find(judged) is None, "nothing submitted for the judged one"
    hook.cancel([first[0]])
