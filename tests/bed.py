"""Helpers for tests that use the test bed (tests/ is on sys.path through its conftest)."""

from __future__ import annotations

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
