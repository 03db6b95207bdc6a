"""The SSH transport's timeout bounds a whole command, not each wait for output: a command that keeps
writing a byte now and then (a stuck tail, a chatty hang) is cut off at its timeout."""

from __future__ import annotations

import select
import socket
import threading
import time

from operators.hpc.transport import _read_both


class TrickleChannel:
    """What _read_both reads of a paramiko channel: a byte of stdout every 50 ms, never an end."""

    eof_received = False
    closed = False

    def __init__(self) -> None:
        self.ours, self.theirs = socket.socketpair()
        self.stop = threading.Event()
        threading.Thread(target=self._trickle, daemon=True).start()

    def _trickle(self) -> None:
        while not self.stop.wait(0.05):
            self.theirs.send(b"x")

    def fileno(self) -> int:
        return self.ours.fileno()

    def recv_ready(self) -> bool:
        return bool(select.select([self.ours], [], [], 0)[0])

    def recv(self, size: int) -> bytes:
        return self.ours.recv(size)

    def recv_stderr_ready(self) -> bool:
        return False

    def close(self) -> None:
        self.stop.set()
        self.ours.close()
        self.theirs.close()


def test_a_command_that_keeps_trickling_output_times_out_at_its_timeout() -> None:
    channel = TrickleChannel()
    outcome: list[BaseException | None] = []

    def read() -> None:
        try:
            _read_both(channel, 0.3)  # type: ignore[arg-type]
            outcome.append(None)
        except TimeoutError as exc:
            outcome.append(exc)

    began = time.monotonic()
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(5)
    try:
        assert not reader.is_alive(), "still reading 5 s after a 0.3-s timeout"
        assert isinstance(outcome[0], TimeoutError)
        assert time.monotonic() - began < 1.5
    finally:
        channel.close()


def test_a_command_that_ends_in_time_gives_its_output() -> None:
    channel = TrickleChannel()
    channel.stop.set()
    channel.theirs.send(b"done")
    channel.eof_received = True
    try:
        assert _read_both(channel, 5) == (b"done", b"")  # type: ignore[arg-type]
    finally:
        channel.close()
