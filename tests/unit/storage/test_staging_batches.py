"""An ensemble's outputs leave a machine in a few remote commands, and a failure leaves no object."""

from __future__ import annotations

import hashlib
import re
from typing import Any, cast

import pytest

from operators.hpc.transport import MAX_COMMAND_BYTES, CommandResult, Transport
from operators.storage.hook import ObjectStoreHook, StoredObject
from operators.storage.staging import StagingError, list_outputs_in, stage_out_many

DIRS = [f"/jobs/run/simulate.{i}" for i in range(8)]


def content(path: str) -> bytes:
    return f"output of {path}".encode()


class Host:
    """A machine whose work dirs hold member-N.npz and member-N.json, answering the staging commands."""

    def __init__(self) -> None:
        self.commands: list[str] = []
        self.pushed: list[str] = []  # curl config lines

    def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> CommandResult:
        self.commands.append(command)
        if command.startswith("for d in"):
            dirs = re.findall(r"/jobs/run/[\w/]*simulate\.\d+", command)
            out = "".join(f"{d}/member-{d[-1]}.{ext}\n" for d in dirs for ext in ("npz", "json"))
            return CommandResult(0, out, "")
        if command.startswith("sha256sum"):
            paths = command.split(" && ")[0].split(" -- ", 1)[1].split()
            digests = "".join(f"{hashlib.sha256(content(p)).hexdigest()}  {p}\n" for p in paths)
            sizes = "".join(f"{len(content(p))}\n" for p in paths)
            return CommandResult(0, f"{digests}#--urgentflow-sizes--\n{sizes}", "")
        if command.startswith("curl"):
            self.pushed += (stdin or "").splitlines()
            return CommandResult(0, "", "")
        raise AssertionError(f"unexpected command {command}")


class Store:
    """The object store: objects arrive as the host says, except ``lost`` ones."""

    bucket = "urgentflow"

    def __init__(self, lost: str = "") -> None:
        self.lost = lost
        self.deleted: list[str] = []
        self.checksums: dict[str, str] = {}

    def presigned_put(self, key: str) -> str:
        return f"http://127.0.0.1:9000/urgentflow/{key}?X-Amz-Signature=s"

    def set_checksum(self, key: str, sha256: str, content_type: str = "") -> None:
        if key == self.lost:
            raise FileNotFoundError(key)
        self.checksums[key] = sha256

    def stat(self, key: str) -> StoredObject:
        path = "/jobs/run/" + key.split("/", 1)[1]
        return StoredObject(self.bucket, key, len(content(path)), self.checksums[key], "etag")

    def delete(self, key: str) -> None:
        self.deleted.append(key)


def files(host: Host) -> list[tuple[str, str]]:
    listed = list_outputs_in(cast(Transport, host), DIRS, "member-*")
    return [(p, "out/" + p.split("/run/", 1)[1]) for d in DIRS for p in listed[d]]


def test_sixteen_files_of_eight_members_go_out_in_three_remote_commands() -> None:
    host, store = Host(), Store()
    stored = stage_out_many(cast(Transport, host), cast(ObjectStoreHook, store), files(host), "presigned")
    assert len(stored) == 16 and len(host.commands) == 3  # listing, checksums, one curl
    assert [o.sha256 for o in stored] == [hashlib.sha256(content(p)).hexdigest() for p, _ in files(Host())]
    # every file paired with its own URL, in order, on stdin (never on a command line)
    uploads = [line for line in host.pushed if line.startswith("upload-file")]
    urls = [line for line in host.pushed if line.startswith("url")]
    assert (
        len(uploads) == len(urls) == 16
        and "simulate.0/member-0.npz" in uploads[0]
        and "member-0.npz" in urls[0]
    )
    assert not any("X-Amz-Signature" in c for c in host.commands)


def test_an_object_that_did_not_arrive_fails_the_group_and_leaves_none_of_it() -> None:
    host = Host()
    wanted = files(host)
    store = Store(lost=wanted[5][1])
    with pytest.raises(FileNotFoundError):
        stage_out_many(cast(Transport, host), cast(ObjectStoreHook, store), wanted, "presigned")
    assert store.deleted == [key for _, key in wanted]


def test_a_missing_checksum_answer_is_an_error_not_a_misaligned_upload() -> None:
    class Short(Host):
        def run(self, command: str, timeout: float = 60.0, stdin: str | None = None) -> Any:
            out = super().run(command, timeout, stdin)
            if command.startswith("sha256sum"):
                return CommandResult(0, out.stdout.split("\n", 1)[1], "")  # one file's line lost
            return out

    host = Short()
    with pytest.raises(StagingError, match="15 answers for 16 files"):
        stage_out_many(cast(Transport, host), cast(ObjectStoreHook, Store()), files(host), "presigned")


def test_outputs_of_many_deep_work_dirs_are_cut_into_commands_that_fit_a_command_line() -> None:
    host, store = Host(), Store()
    deep = [f"/jobs/run/{'d' * 400}/{'e' * 400}/simulate.{i}" for i in range(600)]
    listed = list_outputs_in(cast(Transport, host), deep, "member-*")
    assert all(len(listed[d]) == 2 for d in deep)
    outputs = [(p, "out/" + p.split("/run/", 1)[1]) for d in deep for p in listed[d]]
    stored = stage_out_many(cast(Transport, host), cast(ObjectStoreHook, store), outputs, "presigned")
    assert [o.key for o in stored] == [key for _, key in outputs]
    assert all(len(c.encode()) <= MAX_COMMAND_BYTES for c in host.commands)
    kinds = [c.split()[0] for c in host.commands]
    assert kinds.count("for") > 1 and kinds.count("sha256sum") > 1, "cut into several commands"
