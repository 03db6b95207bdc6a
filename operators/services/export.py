"""Copy files out of a service container (Docker's tar archive of a path) into the object store, streaming."""

from __future__ import annotations

import tarfile
from collections.abc import Sequence
from typing import Any

from operators.services.hook import ServiceHook
from operators.storage.hook import ChunkReader, ObjectStoreHook
from operators.storage.keys import key_segment


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
        with tarfile.open(fileobj=ChunkReader(hook.archive(container_id, path)), mode="r|") as tar:  # type: ignore[call-overload]
            for member in tar:
                handle = tar.extractfile(member) if member.isfile() else None
                if handle is None:
                    continue
                stored = store.put_stream(archive_key(key_prefix, member.name), handle, length=member.size)
                exported.append(
                    {"path": member.name, "key": stored.key, "size": stored.size, "sha256": stored.sha256}
                )
    return exported
