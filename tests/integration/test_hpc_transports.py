"""The SSH transports against alpha's real sshd: large output on both streams, a session killed mid-command."""

from __future__ import annotations

import asyncio
import time

import pytest

from operators.hpc.async_transport import AsyncSSHTransport
from operators.hpc.transport import SSHTransport, TransportError

pytestmark = pytest.mark.integration
CONN = "hpc_alpha"
MIB = 1024 * 1024


def test_large_stderr_and_stdout_arrive_intact_and_quickly() -> None:
    # stderr first: an SSH channel has one flow-control window (~2 MiB) for both streams, so a reader
    # that drains stdout to its end before touching stderr stalls this command until its timeout.
    command = f"yes err | head -c {5 * MIB} >&2; yes out | head -c {5 * MIB}"
    started = time.monotonic()
    result = SSHTransport(CONN).run(command, timeout=30).check("large output")
    elapsed = time.monotonic() - started
    assert result.stderr == "err\n" * (5 * MIB // 4)
    assert result.stdout == "out\n" * (5 * MIB // 4)
    assert elapsed < 10, f"{elapsed:.1f} s for 10 MiB on loopback"


def test_session_killed_without_exit_status_is_a_transport_error() -> None:
    # Killing the remote shell's parent (its sshd session process) closes the channel with no exit
    # status at all: that must never read as exit 0.
    async def scenario() -> None:
        transport = AsyncSSHTransport(CONN)
        with pytest.raises(TransportError, match="without an exit status"):
            await asyncio.wait_for(transport.run("kill -9 $PPID", timeout=20), 30)
        # the dead connection is replaced on the next command
        result = await asyncio.wait_for(transport.run("echo alive", timeout=20), 30)
        assert (result.exit_status, result.stdout) == (0, "alive\n")

    asyncio.run(scenario())
