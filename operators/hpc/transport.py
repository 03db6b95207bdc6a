"""Transports run commands and move small files on an HPC host: over SSH, or on this host.

One SSH connection per host is shared by everything in a process (sync: providers-ssh ``SSHHook``;
async: ``SSHHookAsync`` in ``async_transport``). Counters record every command and connection open so
benchmarks and tests can see what reached the host.
"""

from __future__ import annotations

import io
import logging
import random
import select
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar, Protocol, TypeVar

if TYPE_CHECKING:
    import paramiko

# What reached each host from this process: {"<conn_id>:commands": n, "<conn_id>:connects": n,
# "<conn_id>:stream_bytes": bytes streamed through this process by put_stream/get_stream}.
STATS: Counter[str] = Counter()
MAX_CHANNELS_PER_HOST = 16
MAX_CONNECTS_PER_MINUTE = 10
MAX_GET_BYTES = 1024 * 1024  # get_text is for scripts and small files; data goes through staging
STREAM_CHUNK = 1024 * 1024
# One remote command stays well below Linux's limit for one argument (128 KiB: sshd and LocalTransport
# run it as `bash -c <command>`); a command built from a list (jobs, files, directories) is cut with
# `fitting` into several commands when it would be longer.
MAX_COMMAND_BYTES = 100_000
T = TypeVar("T")


log = logging.getLogger(__name__)


def fitting(
    items: Sequence[T], size: Callable[[Sequence[T]], int], limit: int = MAX_COMMAND_BYTES
) -> list[Sequence[T]]:
    """``items``, in order, cut in halves (and halves of those) until every group's ``size`` (the bytes
    of the command built from it) is at most ``limit``. One item over the limit stays a group of its
    own: its command then fails with the shell's own error instead of being cut."""
    if not items:
        return []
    if len(items) == 1 or size(items) <= limit:
        return [items]
    half = len(items) // 2
    return fitting(items[:half], size, limit) + fitting(items[half:], size, limit)


class TransportError(RuntimeError):
    """The host could not be reached or the command could not be run (not: the command failed)."""


@dataclass(frozen=True)
class CommandResult:
    exit_status: int
    stdout: str
    stderr: str

    def check(self, what: str) -> CommandResult:
        if self.exit_status != 0:
            raise TransportError(f"{what} failed (exit {self.exit_status}): {self.stderr.strip()[-500:]}")
        return self


class Transport(Protocol):
    name: str

    def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult: ...

    def put_text(self, path: str, text: str, mode: int = 0o644) -> None: ...

    def get_text(self, path: str, max_bytes: int = MAX_GET_BYTES) -> str: ...

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int: ...

    def get_stream(self, path: str) -> Iterator[bytes]: ...


def backoff_delay(attempt: int, cap: float = 30.0) -> float:
    """Exponential backoff with full jitter, so reconnecting clients do not retry in lockstep."""
    base = min(2.0 ** (attempt - 1), cap)
    return base / 2 + random.uniform(0, base / 2)  # noqa: S311 - jitter, not crypto


class ConnectLimiter:
    """At most ``per_minute`` connection opens per host in any 60 s window (sites ban floods)."""

    def __init__(self, per_minute: int = MAX_CONNECTS_PER_MINUTE) -> None:
        self.per_minute = per_minute
        self.opened: list[float] = []

    def delay(self, now: float) -> float:
        self.opened = [t for t in self.opened if now - t < 60.0]
        if len(self.opened) < self.per_minute:
            self.opened.append(now)
            return 0.0
        wait = 60.0 - (now - self.opened[0])
        self.opened.append(now + wait)
        return wait


class LocalTransport:
    """Commands on this host through ``bash -c`` (the ``local`` machine without SSH)."""

    name = "local"

    def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult:
        STATS["local:commands"] += 1
        try:
            done = subprocess.run(
                ["bash", "-c", command],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"local command timed out after {timeout}s") from exc
        return CommandResult(done.returncode, done.stdout, done.stderr)

    def put_text(self, path: str, text: str, mode: int = 0o644) -> None:
        import os

        with open(path, "w") as handle:
            handle.write(text)
        os.chmod(path, mode)

    def get_text(self, path: str, max_bytes: int = MAX_GET_BYTES) -> str:
        with open(path, "rb") as handle:
            return _small(handle.read(max_bytes + 1), path, max_bytes)

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        written = 0
        with open(path, "wb") as handle:
            for chunk in chunks:
                written += handle.write(chunk)
        return written

    def get_stream(self, path: str) -> Iterator[bytes]:
        with open(path, "rb") as handle:
            while chunk := handle.read(STREAM_CHUNK):
                yield chunk


class SSHTransport:
    """One shared paramiko connection per Airflow Connection id in this process."""

    _clients: ClassVar[dict[str, paramiko.SSHClient]] = {}
    _limiters: ClassVar[dict[str, ConnectLimiter]] = {}
    _channels: ClassVar[dict[str, threading.BoundedSemaphore]] = {}
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, conn_id: str, max_attempts: int = 5) -> None:
        self.conn_id = conn_id
        self.name = conn_id
        self.max_attempts = max_attempts

    @cached_property
    def hook(self):
        from airflow.providers.ssh.hooks.ssh import SSHHook

        return SSHHook(ssh_conn_id=self.conn_id, keepalive_interval=30)

    def _client(self) -> paramiko.SSHClient:
        with self._lock:
            client = self._clients.get(self.conn_id)
            transport = client.get_transport() if client else None
            if client is not None and transport is not None and transport.is_active():
                return client
            limiter = self._limiters.setdefault(self.conn_id, ConnectLimiter())
            wait = limiter.delay(time.monotonic())
            if wait:
                time.sleep(wait)
            STATS[f"{self.conn_id}:connects"] += 1
            client = self.hook.get_conn()
            transport = client.get_transport()
            if transport is not None and transport.sock is not None:
                # ~48 ms -> ~3 ms per command round trip (Nagle + delayed ACK otherwise).
                transport.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._clients[self.conn_id] = client
            self._channels.setdefault(self.conn_id, threading.BoundedSemaphore(MAX_CHANNELS_PER_HOST))
            return client

    def _drop(self) -> None:
        with self._lock:
            client = self._clients.pop(self.conn_id, None)
        if client is not None:
            client.close()

    def _with_retries(self, what: str, action):
        import paramiko

        last: Exception | None = None
        for attempt in range(1, self.max_attempts + 1):
            try:
                client = self._client()
                with self._channels[self.conn_id]:
                    return action(client)
            except (OSError, EOFError, paramiko.SSHException) as exc:
                if isinstance(exc, paramiko.BadHostKeyException | paramiko.AuthenticationException):
                    raise TransportError(f"{self.conn_id}: {exc}") from exc
                last = exc
                self._drop()
                if attempt < self.max_attempts:
                    time.sleep(backoff_delay(attempt))
        raise TransportError(f"{self.conn_id}: {what} failed after {self.max_attempts} attempts: {last}")

    def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult:
        """Run ``command``; ``stdin`` carries secrets (e.g. presigned URLs) so they never reach a log line.

        Reads stdout and stderr together to their end. (The SSH provider's ``exec_ssh_client_command`` stops
        reading once the exit status has arrived and the buffer is momentarily empty, which cut a
        ~6 kB ``sacct`` listing short here.) A command that times out is not run again.
        """

        def action(client: paramiko.SSHClient) -> CommandResult:
            STATS[f"{self.conn_id}:commands"] += 1
            log.info("%s: %s", self.conn_id, command)
            return _exec(client, command, stdin or "", timeout)

        return self._with_retries("command", action)

    def put_text(self, path: str, text: str, mode: int = 0o644) -> None:
        def action(client: paramiko.SSHClient) -> None:
            STATS[f"{self.conn_id}:commands"] += 1
            with client.open_sftp() as sftp:
                sftp.putfo(io.BytesIO(text.encode()), path)
                sftp.chmod(path, mode)

        self._with_retries("upload", action)

    def get_text(self, path: str, max_bytes: int = MAX_GET_BYTES) -> str:
        def action(client: paramiko.SSHClient) -> str:
            STATS[f"{self.conn_id}:commands"] += 1
            with client.open_sftp() as sftp, sftp.open(path, "rb") as handle:
                return _small(handle.read(max_bytes + 1), path, max_bytes)

        return self._with_retries("download", action)

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        """Write chunks to a remote file over SFTP at constant memory (no retry: a stream is consumed)."""
        STATS[f"{self.conn_id}:commands"] += 1
        written = 0
        with self._client().open_sftp() as sftp, sftp.open(path, "wb") as handle:
            handle.set_pipelined(True)
            for chunk in chunks:
                handle.write(chunk)
                written += len(chunk)
        STATS[f"{self.conn_id}:stream_bytes"] += written
        return written

    def get_stream(self, path: str) -> Iterator[bytes]:
        STATS[f"{self.conn_id}:commands"] += 1
        with self._client().open_sftp() as sftp, sftp.open(path, "rb") as handle:
            handle.prefetch()
            while chunk := handle.read(STREAM_CHUNK):
                STATS[f"{self.conn_id}:stream_bytes"] += len(chunk)
                yield chunk


def _exec(client: paramiko.SSHClient, command: str, stdin: str, timeout: float) -> CommandResult:
    transport = client.get_transport()
    if transport is None:
        raise EOFError("SSH transport closed")
    with transport.open_session(timeout=timeout) as channel:
        channel.settimeout(timeout)
        channel.exec_command(command)
        try:
            if stdin:
                channel.sendall(stdin.encode())
            channel.shutdown_write()
            out, err = _read_both(channel, timeout)
        except TimeoutError:
            raise TransportError(
                f"command timed out after {timeout:g} s (not retried): {command[:200]}"
            ) from None
        status = channel.recv_exit_status()
    return CommandResult(status, out.decode(errors="replace"), err.decode(errors="replace"))


def _read_both(channel: paramiko.Channel, timeout: float) -> tuple[bytes, bytes]:
    """stdout and stderr to their end, each read as it arrives; ``timeout`` s at most for the whole
    command (a command that keeps writing a little does not hold the caller past it).

    Both streams share the channel's flow-control window (~2 MiB): draining one to its end first stalls
    a command that fills the other until the timeout.
    """
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + timeout
    while True:
        ended = channel.eof_received or channel.closed  # before the reads: nothing arrives after it
        left = deadline - time.monotonic()
        if left <= 0 and not ended:
            raise TimeoutError
        if channel.recv_ready():
            out += channel.recv(STREAM_CHUNK)
        elif channel.recv_stderr_ready():
            err += channel.recv_stderr(STREAM_CHUNK)
        elif ended:
            return bytes(out), bytes(err)
        elif not select.select([channel], [], [], left)[0]:
            raise TimeoutError


def _small(data: bytes, path: str, max_bytes: int) -> str:
    if len(data) > max_bytes:
        raise TransportError(f"{path} is larger than {max_bytes} bytes: stage it instead")
    return data.decode(errors="replace")
