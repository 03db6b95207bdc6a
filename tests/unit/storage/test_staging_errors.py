"""A failed transfer raises its own error, also when removing what it left behind fails as well."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any, cast

import pytest

from operators.hpc.transport import CommandResult, Transport, TransportError
from operators.storage.hook import ObjectStoreHook, StoredObject
from operators.storage.staging import stage_in, stage_out

DATA = b"fire perimeter"
DIGEST = hashlib.sha256(DATA).hexdigest()


class Host:
    """The HPC side of staging (a ``Transport``): the transfer breaks, and so does ``rm``."""

    name = "alpha"

    def __init__(self) -> None:
        self.commands: list[str] = []

    def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult:
        self.commands.append(command)
        if command.startswith("rm -f"):
            raise TransportError("host unreachable while cleaning up")
        if command.startswith("sha256sum"):
            # what `sha256sum -- f && echo SECTION && stat -c %s -- f` prints for one file
            path = command.split(" -- ", 1)[1].split(" ", 1)[0]
            return CommandResult(0, f"{DIGEST}  {path}\n#--urgentflow-sizes--\n{len(DATA)}\n", "")
        return CommandResult(0, "", "")

    def put_stream(self, path: str, chunks: Iterable[bytes]) -> int:
        raise TransportError("sftp channel closed mid-transfer")

    def get_stream(self, path: str) -> Iterator[bytes]:
        yield DATA


class Store:
    """The object store (an ``ObjectStoreHook``): uploads break, and so does the cleanup's delete."""

    bucket = "urgentflow"

    def __init__(self) -> None:
        self.deleted: list[str] = []

    def stat(self, key: str) -> StoredObject:
        return StoredObject(self.bucket, key, len(DATA), DIGEST, "etag")

    def iter_verified(self, key: str) -> Iterator[bytes]:
        yield DATA

    def put_stream(self, key: str, stream: Any, content_type: str = "", length: int = -1) -> StoredObject:
        raise ConnectionResetError("store closed the upload")

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        raise ConnectionRefusedError("store down while cleaning up")


def test_stage_in_raises_the_transfer_error_when_removing_the_partial_file_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    host = Host()
    with (
        caplog.at_level(logging.ERROR, "operators.storage.staging"),
        pytest.raises(TransportError, match="mid-transfer"),
    ):
        stage_in(
            cast(Transport, host),
            cast(ObjectStoreHook, Store()),
            "in/terrain.npy",
            "/scratch/run/terrain.npy",
            "sftp",
        )
    assert host.commands[-1] == "rm -f /scratch/run/terrain.npy.partial", "the cleanup was tried"
    assert "host unreachable while cleaning up" in caplog.text


def test_stage_out_raises_the_transfer_error_when_removing_the_partial_object_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = Store()
    with (
        caplog.at_level(logging.ERROR, "operators.storage.staging"),
        pytest.raises(ConnectionResetError, match="closed the upload"),
    ):
        stage_out(
            cast(Transport, Host()),
            cast(ObjectStoreHook, store),
            "/scratch/run/out.tif",
            "out/run/out.tif",
            "sftp",
        )
    assert store.deleted == ["out/run/out.tif"], "the cleanup was tried"
    assert "store down while cleaning up" in caplog.text
