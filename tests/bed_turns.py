"""Turns on the shared test bed for tests running at once (pytest-xdist workers): see tests/conftest.py."""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SERVERS = ("alpha", "beta", "catalog", "docker", "gamma", "s3")  # catalog: the machine's Postgres


@contextlib.contextmanager
def bed_turn(folder: Path, claims: dict[str, bool]) -> Iterator[None]:
    """A turn on the servers of ``claims`` (server -> exclusive): per server, shared by any number of
    tests, or one exclusive test alone. Taken in one order (no two tests wait on each other).

    Per server two ``flock`` files: the turn itself (shared or exclusive) and a gate in front of it that
    an exclusive test holds while it waits, so no shared test starts after it asked (no starvation)."""
    with contextlib.ExitStack() as held:
        for server in sorted(claims):
            gate = held.enter_context(open(folder / f"bed.{server}.gate", "a"))
            turn = held.enter_context(open(folder / f"bed.{server}.turn", "a"))
            if claims[server]:
                fcntl.flock(gate, fcntl.LOCK_EX)
                fcntl.flock(turn, fcntl.LOCK_EX)
            else:
                fcntl.flock(gate, fcntl.LOCK_SH)
                fcntl.flock(turn, fcntl.LOCK_SH)
                fcntl.flock(gate, fcntl.LOCK_UN)
        yield  # the files' locks go when they are closed


def bed_claims(node: Any) -> dict[str, bool]:
    """The servers a test on the bed takes turns on, and whether alone (its marks, see above)."""
    exclusive, uses = node.get_closest_marker("exclusive"), node.get_closest_marker("bed")
    named = [*(exclusive.args if exclusive else ()), *(uses.args if uses else ())]
    unknown = set(named) - set(SERVERS)
    if unknown or (exclusive and uses):
        raise pytest.UsageError(f"{node.nodeid}: bed/exclusive marks name servers of {SERVERS}, one mark")
    if exclusive is not None:
        broken = set(exclusive.args) or set(SERVERS)
        return {server: server in broken for server in SERVERS}
    return dict.fromkeys(uses.args if uses is not None and uses.args else SERVERS, False)
