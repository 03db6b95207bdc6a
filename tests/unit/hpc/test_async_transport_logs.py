"""asyncssh's per-channel INFO lines (each command line in full) stay out of the logs; the rest stays."""

from __future__ import annotations

import logging

import asyncssh
import pytest

import operators.hpc.async_transport  # noqa: F401  (installs the filter on the asyncssh logger)


def test_channel_chatter_is_dropped_connection_lines_and_warnings_are_kept(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="asyncssh")
    channel = asyncssh.logging.logger.get_child(context="conn=0, chan=3")
    channel.info("  Command: %s", "set -- /w/uf-job-1.exit; squeue -j 1")
    channel.info("Received exit status 0")
    asyncssh.logging.logger.get_child(context="conn=0").info("Connected to SSH server")
    channel.warning("Channel open failed")
    assert [r.getMessage() for r in caplog.records] == [
        "[conn=0] Connected to SSH server",
        "[conn=0, chan=3] Channel open failed",
    ]
