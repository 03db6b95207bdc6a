"""Is a service answering yet? An HTTP probe (any status below 500) or a TCP probe, and a bounded wait."""

from __future__ import annotations

import math
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

PROBE_TIMEOUT_S = 2.0
# Docker's userland proxy accepts on the published host port before the service listens, then
# closes the connection: a TCP probe counts as ready only when the connection stays open this long.
TCP_SETTLE_S = 0.3


class ServiceNotReady(RuntimeError):
    """The service did not answer in time, or its container stopped; the message carries its logs."""


def http_probe(url: str, timeout: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own http URL
            return int(response.status) < 500
    except urllib.error.HTTPError as exc:
        return exc.code < 500
    except (urllib.error.URLError, OSError, ValueError):
        return False


def tcp_probe(host: str, port: int, timeout: float = PROBE_TIMEOUT_S) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(TCP_SETTLE_S)
            try:
                return sock.recv(1) != b""  # a greeting: ready; EOF: the proxy found nobody behind it
            except TimeoutError:
                return True  # open and quiet: someone is listening
    except OSError:
        return False


def wait_ready(
    probe: Callable[[], bool],
    alive: Callable[[], bool],
    timeout_s: float,
    interval_s: float = 0.25,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """None once ``probe()`` succeeds; otherwise why not (timed out, or ``alive()`` turned false)."""
    deadline = clock() + timeout_s
    for _ in range(math.ceil(timeout_s / interval_s) + 1):
        if probe():
            return None
        if not alive():
            return "its container stopped"
        if clock() >= deadline:
            break
        sleep(interval_s)
    return f"no answer within {timeout_s:g} s"
