"""Staging between the object store and an HPC machine's file system, two ways.

``presigned``: the HPC host fetches/pushes the bytes itself with curl and a presigned URL (passed on
stdin, never on a command line or in a log), so no byte passes through the worker. ``sftp``: the
worker streams between the store and SFTP at constant memory (for hosts that cannot reach the store).
Either way the sha256 is checked on the HPC side and a bad transfer leaves no file and no object.
A transfer that fails raises its own error, also when removing what it left behind fails too (that is
logged).
"""

from __future__ import annotations

import functools
import logging
import re
import shlex
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal

from operators.hpc.spec import check_path
from operators.hpc.transport import Transport, fitting
from operators.storage.hook import ChunkReader, ObjectStoreHook, StoredObject
from operators.storage.keys import check_key

Method = Literal["presigned", "sftp"]
METHODS = ("presigned", "sftp")
GLOB_RE = re.compile(r"^[A-Za-z0-9._*?-]{1,128}$")
CURL = "curl -fsS --retry 3 --retry-delay 1 --connect-timeout 10"
log = logging.getLogger(__name__)


class StagingError(RuntimeError):
    """A transfer that did not arrive whole: nothing was left behind."""


@dataclass(frozen=True)
class Staged:
    key: str
    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"staging method must be one of {METHODS}, got {method!r}")


@contextmanager
def _undone_on_failure(undo: Callable[[], object], what: str) -> Iterator[None]:
    """Call ``undo`` when the block raises, then raise the block's error: an ``undo`` that fails as
    well is logged, never raised in its place (the transfer's error says what went wrong)."""
    try:
        yield
    except Exception:
        try:
            undo()
        except Exception:
            log.exception("%s failed as well; raising the transfer's own error", what)
        raise


_SECTION = "#--urgentflow-sizes--"


def _digests_command(paths: Sequence[str]) -> str:
    q = " ".join(shlex.quote(p) for p in paths)
    return f"sha256sum -- {q} && echo '{_SECTION}' && stat -c %s -- {q}"


def _remote_digests(transport: Transport, paths: Sequence[str]) -> list[tuple[str, int]]:
    """``(sha256, size)`` of every file in ``paths``, computed on the host in one command."""
    what = f"checksum of {paths[0]}" if len(paths) == 1 else f"checksums of {len(paths)} files"
    out = transport.run(_digests_command(paths)).check(what)
    digests, _, sizes = out.stdout.partition(f"{_SECTION}\n")
    pairs = list(zip([line.split()[0] for line in digests.splitlines() if line], sizes.split(), strict=False))
    if len(pairs) != len(paths):
        raise StagingError(f"{what}: {len(pairs)} answers for {len(paths)} files")
    return [(digest, int(size)) for digest, size in pairs]


def _remote_digest(transport: Transport, path: str) -> tuple[str, int]:
    return _remote_digests(transport, [path])[0]


def stage_in(transport: Transport, store: ObjectStoreHook, key: str, dest: str, method: str) -> Staged:
    """Object ``key`` -> file ``dest`` on the host, verified against the object's recorded sha256."""
    _check_method(method)
    check_key(key)
    check_path(dest, "destination path")
    expected = store.stat(key).sha256
    partial = f"{dest}.partial"
    q_dir, q_partial = shlex.quote(dest.rsplit("/", 1)[0] or "/"), shlex.quote(partial)
    transport.run(f"mkdir -p {q_dir} && rm -f {q_partial}").check("preparing the destination")
    remove_partial = f"removing {partial}"
    with _undone_on_failure(
        lambda: transport.run(f"rm -f {q_partial}").check(remove_partial), remove_partial
    ):
        if method == "presigned":
            url = store.presigned_get(key)
            transport.run(f"{CURL} -o {q_partial} -K -", timeout=3600, stdin=f'url = "{url}"\n').check(
                f"fetching {key} on the host"
            )
        else:
            transport.put_stream(partial, store.iter_verified(key))
        digest, size = _remote_digest(transport, partial)
        if expected and digest != expected:
            raise StagingError(f"{key}: arrived with sha256 {digest}, the store recorded {expected}")
        transport.run(f"mv -f {q_partial} {shlex.quote(dest)}").check("moving the staged file in place")
    return Staged(key, dest, size, digest)


def list_outputs(transport: Transport, directory: str, pattern: str) -> list[str]:
    """Regular files in ``directory`` matching the shell glob ``pattern`` (plain characters only)."""
    return list_outputs_in(transport, [directory], pattern)[directory]


def list_outputs_in(transport: Transport, directories: Sequence[str], pattern: str) -> dict[str, list[str]]:
    """``list_outputs`` of several directories (e.g. an ensemble's work dirs) in one command (more when
    their names would not fit one command line); a directory that does not exist has no files."""
    for directory in directories:
        check_path(directory, "source directory")
    if not GLOB_RE.match(pattern):
        raise ValueError(f"file pattern may use letters, digits, . _ - * ? only: {pattern!r}")
    found: dict[str, list[str]] = {d: [] for d in directories}

    def command(chunk: Sequence[str]) -> str:
        listed = " ".join(shlex.quote(d) for d in chunk)
        return (
            f'for d in {listed}; do (cd "$d" 2>/dev/null && for f in {pattern}; do'
            f' [ -f "$f" ] && printf "%s/%s\\n" "$d" "$f"; done); done; true'
        )

    for chunk in fitting(directories, lambda chunk: len(command(chunk).encode())):
        out = transport.run(command(chunk)).check(
            f"listing {chunk[0]}" if len(chunk) == 1 else f"listing {len(chunk)} directories"
        )
        for path in out.stdout.splitlines():
            directory = path.rsplit("/", 1)[0]
            if directory in found:
                found[directory].append(path)
    return found


def check_stored(stored: StoredObject, size: int, sha256: str, source: str) -> StoredObject:
    """``stored`` when the store holds ``size`` bytes with ``sha256``, else StagingError."""
    if stored.size != size or stored.sha256 != sha256:
        raise StagingError(
            f"{source} -> {stored.key}: stored {stored.size} B sha256 {stored.sha256},"
            f" the source has {size} B sha256 {sha256}"
        )
    return stored


def record_upload(
    store: ObjectStoreHook,
    key: str,
    sha256: str,
    size: int,
    source: str,
    content_type: str = "application/octet-stream",
) -> StoredObject:
    """An object someone else PUT through a presigned URL: record the ``sha256`` its writer computed
    and check that the store holds the ``size`` bytes it sent (StagingError otherwise)."""
    store.set_checksum(key, sha256, content_type)
    return check_stored(store.stat(key), size, sha256, source)


def _delete_all(store: ObjectStoreHook, keys: Sequence[str]) -> None:
    for key in keys:
        store.delete(key)


def stage_out(transport: Transport, store: ObjectStoreHook, path: str, key: str, method: str) -> StoredObject:
    """File ``path`` on the host -> object ``key``, with the host-side sha256 recorded and checked."""
    return stage_out_many(transport, store, [(path, key)], method)[0]


def stage_out_many(
    transport: Transport, store: ObjectStoreHook, files: Sequence[tuple[str, str]], method: str
) -> list[StoredObject]:
    """Files ``(path, key)`` on one host -> objects, each with its host-side sha256 recorded and checked.

    ``presigned``: one command computes every checksum, one ``curl`` on the host pushes every file (its
    presigned URLs on stdin), per group of files whose checksum command fits one command line; when
    any of them fails, none of that group's objects is left. ``sftp``: file by file through the worker."""
    _check_method(method)
    for path, key in files:
        check_path(path, "source path")
        check_key(key)
    stored: list[StoredObject] = []
    for group in fitting(files, lambda group: len(_digests_command([path for path, _ in group]).encode())):
        digests = _remote_digests(transport, [path for path, _ in group])
        keys = [key for _, key in group]
        what = f"removing the partial object {keys[0]}" if len(keys) == 1 else f"removing {len(keys)} objects"
        with _undone_on_failure(functools.partial(_delete_all, store, keys), what):
            if method == "presigned":
                config = "".join(f'upload-file = "{p}"\nurl = "{store.presigned_put(k)}"\n' for p, k in group)
                what = f"pushing {group[0][0]}" if len(group) == 1 else f"pushing {len(group)} files"
                transport.run(f"{CURL} -K -", timeout=3600, stdin=config).check(f"{what} from the host")
                stored += [
                    record_upload(store, key, digest, size, path)
                    for (path, key), (digest, size) in zip(group, digests, strict=True)
                ]
            else:
                stored += [
                    check_stored(
                        store.put_stream(key, ChunkReader(transport.get_stream(path))), size, digest, path
                    )
                    for (path, key), (digest, size) in zip(group, digests, strict=True)
                ]
    return stored
