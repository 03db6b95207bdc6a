"""Helpers for tests that use the test bed (tests/ is on sys.path through its conftest)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from connections import load_connections


def bed_connection(conn_id: str) -> dict:
    """The recorded connection ``conn_id``; fails (never skips) when the test bed did not record it."""
    conns = load_connections()
    if conn_id not in conns:
        pytest.fail(
            f"test-bed connection {conn_id!r} is missing: run `scripts/testbed start` (make test does)",
            pytrace=False,
        )
    return conns[conn_id]


class ImmediateOutbox:
    """The exit handler's outbox, applying each record at once: tests read the catalog right after a
    listener call (the real outbox writes from a thread; it has its own tests)."""

    def __init__(self, apply: Any) -> None:
        self.apply = apply

    def put(self, record: dict[str, Any]) -> None:
        self.apply(json.loads(json.dumps(record)))
