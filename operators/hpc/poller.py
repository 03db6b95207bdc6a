"""One poller per machine in the triggerer: ONE status command per interval for all watched jobs.

Every ``BatchJobTrigger`` of a machine registers its job here and awaits a future; the poller batches
all registered jobs into a single status command over the machine's one shared connection, at the
smallest poll interval among its watchers, resolves futures of jobs that ended, and stops when nobody
watches any more. Any error of a poll counts as a failed poll; after ``max_failed_polls`` in a row, or
if the loop itself ends while jobs are watched, every waiting future fails instead of waiting for ever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field

from operators.hpc.adapters import BatchAdapter, JobRef, get_adapter
from operators.hpc.adapters.base import parse_woken, wait_for_exit_files_command
from operators.hpc.async_transport import AsyncTransport, async_transport
from operators.hpc.notice_listener import notice_listener
from operators.hpc.states import JobState, JobStatus
from operators.hpc.transport import TransportError, fitting

log = logging.getLogger(__name__)

# A poll that waits on the machine returns after this long at most (the transport's timeout is 60 s).
MAX_WAIT_ON_MACHINE_SECONDS = 30.0
# When a job's exit file is there (or the job sent its completion notice) but its batch system still
# lists it (Grid Engine takes seconds to take note), the poller polls again this often, up to this many
# times, before it waits on the machine (or for the interval) again.
RECHECK_SECONDS = 0.5
RECHECKS = 12


class PollingFailed(RuntimeError):
    """The machine's jobs cannot be watched any more; ``__cause__`` is the error that ended it."""


class MachineUnreachable(PollingFailed):
    """The machine did not answer for too many polls in a row."""


@dataclass
class _Watch:
    ref: JobRef
    future: asyncio.Future[JobStatus]
    interval: float
    held_limit: float | None = None
    unknown_polls: int = 0
    unknown_since: float | None = None
    held_since: float | None = None


@dataclass
class MachinePoller:
    key: str
    transport: AsyncTransport
    adapter: BatchAdapter
    interval: float
    unknown_grace_polls: int = 6
    max_failed_polls: int = 60
    # wait between polls on the machine, for the watched jobs' exit files (see Machine.watch_exit_files)
    wait_on_machine: bool = False
    watches: dict[str, list[_Watch]] = field(default_factory=dict)
    polls: int = 0
    # the last poll's watched jobs did not fit one command line with a wait on the machine: polled in
    # several commands, at the interval
    cut: bool = False
    _task: asyncio.Task[None] | None = None
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _notices: int = 0  # completion notices since the last poll began

    async def watch(
        self, ref: JobRef, interval: float | None = None, held_limit: float | None = None
    ) -> JobStatus:
        """Wait until ``ref`` ends (or is judged lost) and return its last status.

        :param ref: the job to watch.
        :param interval: seconds between status polls this watcher needs (default: the poller's);
            the machine is polled at the smallest interval among its current watchers.
        :param held_limit: seconds a job may stay on a hold; then its (PENDING, ``held``) status is
            returned for the caller to act on. None: a held job is watched until it ends.
        :raises PollingFailed: the machine could not be polled ``max_failed_polls`` times in a row
            (``MachineUnreachable`` when the transport failed), or the poller stopped.
        """
        watch = _Watch(
            ref,
            asyncio.get_running_loop().create_future(),
            self.interval if interval is None else interval,
            held_limit,
        )
        self.watches.setdefault(ref.job_id, []).append(watch)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name=f"urgentflow-poller-{self.key}")
            self._task.add_done_callback(self._loop_ended)
        self._wake.set()
        try:
            return await watch.future
        finally:
            entries = self.watches.get(ref.job_id, [])
            if watch in entries:
                entries.remove(watch)
            if not entries:
                self.watches.pop(ref.job_id, None)

    async def _loop(self) -> None:
        failures = 0
        traced: set[tuple[type[Exception], str]] = set()  # unexpected errors of this failure streak
        # ended jobs (their exit files seen) the batch system still listed, and plain polls left for them
        outstanding = rechecks = 0
        while self.watches:
            # Watchers new since the last poll are polled at once; otherwise a poll on a machine that
            # allows it first waits there (up to the interval) for a watched job's exit file.
            fresh = self._wake.is_set()
            self._wake.clear()
            noticed, self._notices = self._notices, 0
            refs = [entries[0].ref for entries in self.watches.values() if entries]
            interval = self._interval()
            waited = self.wait_on_machine and not fresh and failures == 0 and rechecks == 0
            rechecks = max(0, rechecks - 1)
            began = time.monotonic()
            try:
                statuses, woken = await self._poll(
                    refs, min(interval, MAX_WAIT_ON_MACHINE_SECONDS) if waited else 0
                )
            except Exception as exc:
                failures += 1
                # Transport and parse (ValueError) failures are expected; anything else is a bug worth
                # a traceback, once per distinct error. The status output itself is never logged.
                signature = (type(exc), str(exc))
                trace = not isinstance(exc, TransportError | ValueError) and signature not in traced
                traced.add(signature)
                log.warning(
                    "%s: status poll %d failed: %s: %s",
                    self.key,
                    failures,
                    type(exc).__name__,
                    exc,
                    exc_info=exc if trace else None,
                )
                if failures >= self.max_failed_polls:
                    kind = MachineUnreachable if isinstance(exc, TransportError) else PollingFailed
                    last = f"{type(exc).__name__}: {exc}"
                    self._fail_all(
                        kind(f"{self.key}: {failures} status polls in a row failed, last {last}"), exc
                    )
                    return
                statuses, woken = {}, None
            else:
                failures = 0
                traced.clear()
            self.polls += 1
            ended = self._resolve(statuses)
            if not self.watches:
                break
            if (woken is not None or noticed) and failures == 0:
                # ends the machine showed (exit files) or the jobs told (notices)
                outstanding = max(0, (woken or 0) + noticed - ended)
                rechecks = RECHECKS if outstanding else 0  # still listed: look again soon
            elif rechecks:
                outstanding -= ended
                rechecks = rechecks if outstanding > 0 else 0
            if rechecks:
                await asyncio.sleep(RECHECK_SECONDS)
            else:
                await self._until_next_poll(
                    interval, began, self.wait_on_machine and not self.cut and failures == 0
                )

    async def _until_next_poll(self, interval: float, began: float, waits_there: bool) -> None:
        """The pause between two polls. When the next poll ``waits_there`` (on the machine), a short one:
        never more than one poll per 0.2 s (a machine whose wait returns at once must not be polled in a
        tight loop). Otherwise the interval, cut short by a new watcher. After a new watcher, 0.2 s more
        for the registrations arriving together."""
        if waits_there:
            await asyncio.sleep(max(0.0, min(0.2, interval) - (time.monotonic() - began)))
            if self._wake.is_set():
                await asyncio.sleep(min(0.2, interval))
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), interval)
            await asyncio.sleep(min(0.2, interval))

    async def _poll(self, refs: list[JobRef], wait: float) -> tuple[dict[str, JobStatus], int | None]:
        """The jobs' statuses, and how many new exit files ended the wait on the machine (``None``: no
        wait). ``wait`` seconds (0: none) are spent on the machine first, in the same command, when the
        command fits one command line; more jobs than that are polled in several commands, none waiting
        (``cut``: the next poll comes after the interval)."""

        def command(group: Sequence[JobRef], wait: float) -> str:
            status = self.adapter.status_command(group)
            return f"{wait_for_exit_files_command(group, wait)}; {status}" if wait else status

        # Whether a wait fits is judged with the longest wait, also for a poll that does not wait (new
        # watchers): when it fits, every poll of these jobs is one command.
        self.cut = (
            len(fitting(refs, lambda group: len(command(group, MAX_WAIT_ON_MACHINE_SECONDS).encode()))) > 1
        )
        wait = 0 if self.cut else wait
        groups = fitting(refs, lambda group: len(command(group, 0).encode())) if self.cut else [refs]
        statuses: dict[str, JobStatus] = {}
        woken = None
        for group in groups:
            out = await self.transport.run(command(group, wait))
            statuses.update(self.adapter.parse_status(out.stdout, group))
            woken = parse_woken(out.stderr) if wait else None
        return statuses, woken

    def _interval(self) -> float:
        """The smallest interval among the current watchers."""
        return min((w.interval for entries in self.watches.values() for w in entries), default=self.interval)

    def noticed(self) -> None:
        """A job of this machine said it ended (operators.hpc.notice): poll at once, and soon again while
        the batch system still lists as many jobs as said so."""
        self._notices += 1
        self._wake.set()

    def _loop_ended(self, task: asyncio.Task[None]) -> None:
        """A loop that ends (a bug, a cancellation) while jobs are still watched must not leave them waiting."""
        if task is not self._task:  # a newer loop already polls for everyone watching
            return
        waiting = sum(not w.future.done() for entries in self.watches.values() for w in entries)
        if not waiting:  # the normal ends: nobody watches, or every watcher was already failed
            return
        cause = asyncio.CancelledError() if task.cancelled() else task.exception()
        log.error("%s: poller stopped with %d jobs watched", self.key, waiting, exc_info=cause)
        self._fail_all(PollingFailed(f"{self.key}: poller stopped: {cause!r}"), cause)

    def _resolve(self, statuses: dict[str, JobStatus]) -> int:
        """Hand each watcher its job's status when it is news for it; returns how many jobs ended."""
        ended = 0
        for job_id, entries in list(self.watches.items()):
            status = statuses.get(job_id)
            if status is None:
                continue
            ended += status.state.terminal
            for watch in entries:
                if status.state is JobState.UNKNOWN:
                    # Lost only after the grace polls *and* their intervals' worth of time: polls that
                    # waited on the machine come sooner when other jobs end.
                    watch.unknown_polls += 1
                    now = time.monotonic()
                    watch.unknown_since = watch.unknown_since if watch.unknown_since is not None else now
                    grace = self.unknown_grace_polls
                    if watch.unknown_polls <= grace or now - watch.unknown_since < grace * watch.interval:
                        continue
                elif not status.state.terminal:
                    watch.unknown_polls, watch.unknown_since = 0, None
                    if not self._held_too_long(watch, status):
                        continue
                if not watch.future.done():
                    watch.future.set_result(status)
        return ended

    @staticmethod
    def _held_too_long(watch: _Watch, status: JobStatus) -> bool:
        if not status.held:
            watch.held_since = None
            return False
        now = time.monotonic()
        watch.held_since = watch.held_since if watch.held_since is not None else now
        return watch.held_limit is not None and now - watch.held_since >= watch.held_limit

    def _fail_all(self, exc: PollingFailed, cause: BaseException | None) -> None:
        exc.__cause__ = cause
        for entries in self.watches.values():
            for watch in entries:
                if not watch.future.done():
                    watch.future.set_exception(exc)


# Per event loop (the triggerer has one; tests and benchmarks make many): loop -> key -> poller.
_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, MachinePoller]] = (
    weakref.WeakKeyDictionary()
)


def get_poller(
    conn_id: str | None,
    batch_system: str,
    interval: float,
    wait_on_machine: bool = False,
    notices_of: str | None = None,
) -> MachinePoller:
    """The poller of one machine in the running event loop (created on first use).

    One per machine whatever the intervals, so a machine gets one status command per poll for all its
    jobs; each ``watch(ref, interval)`` names the interval it needs. ``interval`` is a new poller's
    default for watches that name none; ``wait_on_machine`` (the machine's ``watch_exit_files``) lets
    each poll wait on the machine for a job's end (a later call may switch it on). ``notices_of`` (the
    machine's name, when it has ``completion_notice``): the completion notices of its jobs wake it.
    """
    key = f"{batch_system}@{conn_id or 'local'}"
    pollers = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    if key not in pollers:
        pollers[key] = MachinePoller(key, async_transport(conn_id), get_adapter(batch_system), interval)
    pollers[key].wait_on_machine = pollers[key].wait_on_machine or wait_on_machine
    if notices_of is not None:
        notice_listener().register(notices_of, pollers[key])
    return pollers[key]
