"""One submitter per machine in the triggerer: the poller's twin for submissions.

Every member trigger of a machine hands its job spec to the machine's submitter and awaits a future. The
submitter gathers the specs that arrive within ``window`` seconds (an ensemble's members are started by
the triggerer together) and submits them all in two remote commands over the machine's one shared
connection (``operators.hpc.submission``: the look-up by name, then scripts + submissions + id
records), however many they are. Specs of the same name in one batch (a trigger run twice) get the same job.
A spec handed in ``ahead`` of its own task (``operators.hpc.ahead``) is only submitted when it never had a
job: any later job of that task is its own trigger's decision.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from operators.hpc import submission
from operators.hpc.adapters import BatchAdapter, get_adapter
from operators.hpc.async_transport import AsyncTransport, async_transport
from operators.hpc.spec import JobSpec

log = logging.getLogger(__name__)


@dataclass
class _Pending:
    spec: JobSpec
    future: asyncio.Future[tuple[str, bool] | None]
    ahead: bool = False


@dataclass
class MachineSubmitter:
    key: str
    transport: AsyncTransport
    adapter: BatchAdapter
    window: float = 0.1
    timeout: float = 120.0
    pending: list[_Pending] = field(default_factory=list)
    commands: int = 0
    _task: asyncio.Task[None] | None = None

    async def submit(self, spec: JobSpec) -> tuple[str, bool]:
        """Submit ``spec`` unless it has a live or unjudged job; ``(job_id, reattached)`` as ``BatchHook.submit``."""
        result = await self._enqueue(spec, ahead=False)
        assert result is not None  # only a spec submitted ahead is ever left alone
        return result

    async def submit_ahead(self, spec: JobSpec) -> tuple[str, bool] | None:
        """Submit ``spec`` only if it never had a job (None: left to its own task's trigger)."""
        return await self._enqueue(spec, ahead=True)

    async def _enqueue(self, spec: JobSpec, ahead: bool) -> tuple[str, bool] | None:
        pending = _Pending(spec, asyncio.get_running_loop().create_future(), ahead)
        self.pending.append(pending)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"urgentflow-submitter-{self.key}")
        return await pending.future

    async def _loop(self) -> None:
        while self.pending:
            await asyncio.sleep(self.window)
            batch, self.pending = self.pending, []
            by_name: dict[str, list[_Pending]] = {}
            for item in batch:
                by_name.setdefault(item.spec.name, []).append(item)
            # a task's own spec wins over the one a sibling built ahead for it
            specs = [
                next((i.spec for i in items if not i.ahead), items[0].spec) for items in by_name.values()
            ]
            ahead = {name for name, items in by_name.items() if all(item.ahead for item in items)}
            for group in submission.chunks(self.adapter, specs):
                try:
                    results = await self._submit(group, ahead)
                except Exception as exc:  # the whole group failed (transport, parse): each waiter gets it
                    results = [exc] * len(group)
                for spec, result in zip(group, results, strict=True):
                    for item in by_name[spec.name]:
                        if item.future.done():
                            continue
                        if isinstance(result, BaseException):
                            item.future.set_exception(result)
                        else:
                            item.future.set_result(result)

    async def _run(self, command: str, what: str, stdin: str | None = None) -> str:
        self.commands += 1
        result = await self.transport.run(command, timeout=self.timeout, stdin=stdin)
        return result.check(what).stdout

    async def _submit(
        self, specs: Sequence[JobSpec], ahead: set[str]
    ) -> list[tuple[str, bool] | Exception | None]:
        out = await self._run(
            submission.SCRIPT, "job lookup", stdin=submission.lookup_command(self.adapter, specs)
        )
        results: list[tuple[str, bool] | Exception | None] = []
        new: list[int] = []
        seen: list[submission.Absent] = []
        for i, found in enumerate(submission.parse_lookup(self.adapter, out, specs)):
            if isinstance(found, submission.Absent):
                if specs[i].name in ahead and not found.never_submitted:
                    results.append(None)
                    continue
                new.append(i)
                seen.append(found)
                results.append(submission.SubmissionError("not submitted"))
            elif isinstance(found, Exception):
                results.append(found)
            else:
                results.append(self._reattach(found, specs[i]))
        if not new:
            return results
        fresh = [specs[i] for i in new]
        script = submission.submit_command(self.adapter, fresh, seen)
        out = await self._run(submission.SCRIPT, "submission", stdin=script)
        submitted = 0
        for i, job_id in zip(new, submission.parse_submit(self.adapter, out, fresh), strict=True):
            if isinstance(job_id, submission.Found):
                results[i] = self._reattach(job_id, specs[i])
            else:
                results[i] = job_id if isinstance(job_id, Exception) else (job_id, False)
                submitted += not isinstance(job_id, Exception)
        log.info("%s: submitted %d of %d jobs in one batch", self.key, submitted, len(fresh))
        return results

    def _reattach(self, found: submission.Found, spec: JobSpec) -> tuple[str, bool]:
        log.info("%s: re-attaching to %s job %s (%s)", self.key, found.why, found.job_id, spec.name)
        return found.job_id, True


# Per event loop (the triggerer has one; tests and benchmarks make many): loop -> key -> submitter.
_SUBMITTERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, MachineSubmitter]] = (
    weakref.WeakKeyDictionary()
)


def get_submitter(conn_id: str | None, batch_system: str) -> MachineSubmitter:
    """The submitter of one machine in the running event loop (created on first use)."""
    key = f"{batch_system}@{conn_id or 'local'}"
    submitters = _SUBMITTERS.setdefault(asyncio.get_running_loop(), {})
    if key not in submitters:
        submitters[key] = MachineSubmitter(key, async_transport(conn_id), get_adapter(batch_system))
    return submitters[key]
