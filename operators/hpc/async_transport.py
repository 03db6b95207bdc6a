"""Async transport for triggers: one asyncssh connection per host per event loop, shared by all.

Connections come from providers-ssh ``SSHHookAsync`` (so host keys, key files and known_hosts come from
the Airflow Connection). A semaphore caps concurrent channels; a limiter caps connection opens per
minute; lost connections are reopened with jittered backoff.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from dataclasses import dataclass, field
from typing import Any, Protocol

from operators.hpc.transport import (
    MAX_CHANNELS_PER_HOST,
    STATS,
    CommandResult,
    ConnectLimiter,
    TransportError,
    backoff_delay,
)


class _QuietChannels(logging.Filter):
    """asyncssh logs five INFO lines per command, one of them the whole command line: a poll names every
    watched job's files (200 jobs: ~50 kB per poll). Its connection-level lines and every warning stay."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "chan=" not in str(record.msg)


logging.getLogger("asyncssh").addFilter(_QuietChannels())


class AsyncTransport(Protocol):
    name: str

    async def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult: ...


@dataclass
class _HostState:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    channels: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(MAX_CHANNELS_PER_HOST))
    limiter: ConnectLimiter = field(default_factory=ConnectLimiter)
    conn: Any = None


# Per event loop: loop -> connection id -> shared state (connection, channel cap, connect limiter).
_HOSTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _HostState]] = (
    weakref.WeakKeyDictionary()
)


def _state(conn_id: str) -> _HostState:
    hosts = _HOSTS.setdefault(asyncio.get_running_loop(), {})
    if conn_id not in hosts:
        hosts[conn_id] = _HostState()
    return hosts[conn_id]


class AsyncSSHTransport:
    def __init__(self, conn_id: str, max_attempts: int = 5) -> None:
        self.conn_id = conn_id
        self.name = conn_id
        self.max_attempts = max_attempts

    async def _conn(self, state: _HostState) -> Any:
        async with state.lock:
            if state.conn is not None and not state.conn.is_closed():
                return state.conn
            wait = state.limiter.delay(asyncio.get_running_loop().time())
            if wait:
                await asyncio.sleep(wait)
            from airflow.providers.ssh.hooks.ssh import SSHHookAsync

            STATS[f"{self.conn_id}:connects"] += 1
            state.conn = await SSHHookAsync(ssh_conn_id=self.conn_id).get_conn()
            return state.conn

    async def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult:
        """Run ``command``; ``stdin`` (e.g. a batch of job scripts for ``bash -s``) never reaches a log."""
        import asyncssh

        state = _state(self.conn_id)
        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                conn = await self._conn(state)
                async with state.channels:
                    STATS[f"{self.conn_id}:commands"] += 1
                    result = await conn.run(command, input=stdin, timeout=timeout, check=False)
                if result.exit_status is None:
                    # The channel closed with no exit status (e.g. its sshd session was killed): the
                    # command may have run, so it is neither success nor safe to run again.
                    raise TransportError(
                        f"{self.conn_id}: command ended without an exit status (not retried): {command[:200]}"
                    )
                return CommandResult(result.exit_status, str(result.stdout or ""), str(result.stderr or ""))
            except asyncssh.HostKeyNotVerifiable as exc:
                raise TransportError(f"{self.conn_id}: host key not verifiable: {exc}") from exc
            except asyncssh.PermissionDenied as exc:
                raise TransportError(f"{self.conn_id}: permission denied: {exc}") from exc
            except (OSError, asyncssh.Error, TimeoutError) as exc:
                last = exc
                if state.conn is not None:
                    state.conn.close()
                    state.conn = None
                if attempt < self.max_attempts:
                    await asyncio.sleep(backoff_delay(attempt))
        raise TransportError(f"{self.conn_id}: command failed after {self.max_attempts} attempts: {last}")


class AsyncLocalTransport:
    name = "local"

    async def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult:
        STATS["local:commands"] += 1
        proc = await asyncio.create_subprocess_exec(
            "bash",
            "-c",
            command,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            data = stdin.encode() if stdin is not None else None
            out, err = await asyncio.wait_for(proc.communicate(data), timeout)
        except TimeoutError as exc:
            proc.kill()
            raise TransportError(f"local command timed out after {timeout}s") from exc
        return CommandResult(proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace"))


def async_transport(conn_id: str | None) -> AsyncTransport:
    return AsyncSSHTransport(conn_id) if conn_id else AsyncLocalTransport()
