"""Copy files out of a service container (Docker's tar archive of a path) into the object store, streaming."""

from __future__ import annotations

import tarfile
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from operators.services.hook import ServiceHook
from operators.storage.hook import ObjectStoreHook
from operators.storage.keys import key_segment


class _ChunkReader:
    """A read()-able view of an iterator of byte chunks (what ``get_archive`` returns)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._buffer = b""

    def read(self, n: int = -1) -> bytes:
        while n < 0 or len(self._buffer) < n:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if n < 0:
            data, self._buffer = self._buffer, b""
        else:
            data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data


def archive_key(prefix: str, member_name: str) -> str:
    """``prefix/<member path>``, each segment made a valid object-key segment."""
    segments = [key_segment(s) for s in member_name.split("/") if s not in ("", ".")]
    return "/".join([prefix.strip("/"), *segments])


def export_paths(
    hook: ServiceHook, store: ObjectStoreHook, container_id: str, paths: Sequence[str], key_prefix: str
) -> list[dict[str, Any]]:
    """Every regular file under each of ``paths`` in the container -> ``key_prefix/<name>``."""
    exported = []
    for path in paths:
        with tarfile.open(fileobj=_ChunkReader(hook.archive(container_id, path)), mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    continue
                stored = store.put_stream(archive_key(key_prefix, member.name), handle, length=member.size)
                exported.append(
                    {"path": member.name, "key": stored.key, "size": stored.size, "sha256": stored.sha256}
                )
    return exported
