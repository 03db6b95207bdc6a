"""The triggerer's ear for completion notices (operators.hpc.notice): one ``LISTEN`` connection to the
catalog database per event loop, while a poller of a machine with notices watches jobs.

A notice for a machine wakes its pollers (``MachinePoller.noticed``): they poll at once. When the database
connection is lost the listener connects again after a pause (up to ``MAX_PAUSE_SECONDS``); meanwhile,
and whenever a notice does not come, the pollers poll at their interval as without notices.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

from operators.connection_cache import cached_connection
from operators.hpc.notice import CHANNEL

log = logging.getLogger(__name__)

FIRST_PAUSE_SECONDS = 1.0
MAX_PAUSE_SECONDS = 30.0
CHECK_SECONDS = 30.0  # how often the listener looks whether anyone still watches (then it closes)


class Wakeable(Protocol):
    watches: dict[str, Any]

    def noticed(self) -> None: ...


@dataclass
class NoticeListener:
    conn_id: str = "catalog_db"
    pollers: dict[str, list[Wakeable]] = field(default_factory=dict)  # machine -> its pollers
    notices: int = 0  # notices heard
    backend_pid: int | None = None  # the database session listening (None: not yet)
    _task: asyncio.Task[None] | None = None

    def register(self, machine: str, poller: Wakeable) -> None:
        """Wake ``poller`` on a notice for ``machine``; start listening when not yet."""
        known = self.pollers.setdefault(machine, [])
        if not any(p is poller for p in known):
            known.append(poller)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="urgentflow-notice-listener")

    def _wanted(self) -> bool:
        return any(p.watches for pollers in self.pollers.values() for p in pollers)

    def _notice(self, machine: str) -> None:
        self.notices += 1
        for poller in self.pollers.get(machine, ()):
            poller.noticed()

    async def _run(self) -> None:
        pause = FIRST_PAUSE_SECONDS
        while True:
            self.backend_pid = None
            try:
                await self._listen()  # returns when nobody watches any more
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the database is away: poll at the interval until it is back
                if self.backend_pid is not None:  # it listened until now: a fresh loss
                    pause = FIRST_PAUSE_SECONDS
                log.warning("completion notices: %s: %s (again in %.0f s)", type(exc).__name__, exc, pause)
                await asyncio.sleep(pause)
                pause = min(MAX_PAUSE_SECONDS, pause * 2)
            # Asked again after every await (closing the connection is one): a watcher that came meanwhile
            # found this task not yet done and started none. No await between this check and the end.
            if not self._wanted():
                return

    async def _listen(self) -> None:
        import psycopg

        conn = await psycopg.AsyncConnection.connect(_conninfo(self.conn_id), autocommit=True)
        try:
            self.backend_pid = conn.info.backend_pid
            await conn.execute(f"LISTEN {CHANNEL}")
            log.info("completion notices: listening on %s", CHANNEL)
            while True:
                async for notify in conn.notifies(timeout=CHECK_SECONDS):
                    self._notice(notify.payload)
                if not self._wanted():
                    return
        finally:
            await conn.close()


def _conninfo(conn_id: str) -> str:
    """The libpq connection string of the catalog's Airflow Connection."""
    from psycopg.conninfo import make_conninfo

    connection = cached_connection(conn_id)
    return make_conninfo(
        host=connection.host or "",
        port=str(connection.port or 5432),
        user=connection.login or "",
        password=connection.password or "",
        dbname=connection.schema or "",
        connect_timeout="10",
    )


# Per event loop (the triggerer has one; tests make many).
_LISTENERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, NoticeListener] = weakref.WeakKeyDictionary()


def notice_listener() -> NoticeListener:
    """The running event loop's listener (created on first use)."""
    loop = asyncio.get_running_loop()
    if loop not in _LISTENERS:
        _LISTENERS[loop] = NoticeListener()
    return _LISTENERS[loop]
