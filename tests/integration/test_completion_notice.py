"""Completion notices on the real test bed: a job on `beta` (Slurm) sends its notice to the plugin app
(served here by uvicorn), the app checks it and records it in the real catalog database, whose NOTIFY
reaches a listener on another connection and wakes beta's poller: the job's end is known at once,
although the poller's interval is a minute and it does not wait on the machine for exit files."""

from __future__ import annotations

import asyncio
import secrets
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from plugin_app import serving_plugin_app

from operators.catalog.catalog import Catalog
from operators.catalog.notices import NoticeCatalog
from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook
from operators.hpc.notice import notice_for
from operators.hpc.notice_listener import NoticeListener
from operators.hpc.poller import get_poller
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState

pytestmark = pytest.mark.integration
BASE = "/home/urgent/urgentflow/jobs/tests/notices"
INTERVAL = 60.0


class Poller:
    """What the listener wakes: a poller with a watched job."""

    def __init__(self) -> None:
        self.watches: dict[str, Any] = {"1": ["a watch"]}
        self.notices = 0
        self.woken = asyncio.Event()

    def noticed(self) -> None:
        self.notices += 1
        self.woken.set()


async def notice_heard(listener_poller: Poller, machine: str, tries: int = 40) -> str:
    """Accept fresh notices for ``machine`` until one wakes the poller (the listener connects in a
    thread, so the first may come before it listens); returns the nonce that did."""
    catalog = NoticeCatalog()
    for _ in range(tries):
        nonce = secrets.token_hex(16)
        assert await asyncio.to_thread(catalog.accept_notice, machine, "uf-job", nonce)
        try:
            await asyncio.wait_for(listener_poller.woken.wait(), 0.5)
        except TimeoutError:
            continue
        listener_poller.woken.clear()
        return nonce
    pytest.fail(f"no notice for {machine} reached the listener in {tries} tries")


def listeners_of(pid: int) -> int:
    rows = Catalog()._all("SELECT count(*) AS n FROM pg_stat_activity WHERE pid = %s", (pid,))
    return int(rows[0]["n"])


@pytest.mark.bed("catalog")
def test_a_notice_is_heard_once_and_after_the_database_connection_is_lost() -> None:
    machine = f"itest-{uuid.uuid4().hex[:8]}"

    async def scenario() -> None:
        listener, poller, other = NoticeListener(), Poller(), Poller()
        listener.register(machine, poller)
        listener.register(f"{machine}-other", other)
        nonce = await notice_heard(poller, machine)
        heard = poller.notices
        assert not await asyncio.to_thread(NoticeCatalog().accept_notice, machine, "uf-job", nonce)
        await asyncio.sleep(1.0)
        assert poller.notices == heard, "a replayed notice wakes no one"
        assert other.notices == 0, "a notice wakes the pollers of its machine only"
        # the listener's database connection is cut (a restart of the server, a network cut)
        pid = listener.backend_pid
        assert pid is not None and listeners_of(pid) == 1
        Catalog()._all("SELECT pg_terminate_backend(%s) AS done", (pid,))
        await notice_heard(poller, machine)
        assert listener.backend_pid != pid, "listening again on a new connection"
        assert listener._task is not None
        listener._task.cancel()

    asyncio.run(asyncio.wait_for(scenario(), 60))


@pytest.fixture
def api() -> Iterator[str]:
    """The plugin app on a free port of 127.0.0.1, with a notice secret of its own."""
    with serving_plugin_app() as url:
        yield url


@pytest.mark.bed("beta", "catalog")
def test_a_job_on_beta_is_known_ended_at_its_notice_not_at_its_next_poll(api: str) -> None:
    hook = BatchHook("beta")
    assert hook.machine.completion_notice and hook.machine.connection
    name = f"uf-it-notice-{uuid.uuid4().hex[:8]}"
    notice = notice_for("beta", name)
    assert notice is not None and notice.url.startswith(api)
    spec = JobSpec(name=name, command=["sleep", "4"], workdir=f"{BASE}/{name}", notice=notice)
    job_id, _ = hook.submit(spec)

    async def watch() -> tuple[Any, float, int]:
        poller = get_poller(hook.machine.connection, "slurm", INTERVAL, notices_of="beta")
        assert not poller.wait_on_machine
        began = time.monotonic()
        status = await asyncio.wait_for(poller.watch(JobRef(job_id, spec.exit_file, name)), 50)
        return status, time.monotonic() - began, poller.polls

    status, took, polls = asyncio.run(watch())
    assert status.state is JobState.COMPLETED, status
    assert took < INTERVAL / 2 and polls >= 2, (took, polls)
    (row,) = NoticeCatalog().notices_of("beta", name)
    assert row["nonce"] == notice.nonce
