"""Object keys: validated before they reach the object store or a remote shell."""

from __future__ import annotations

import re

MAX_KEY_BYTES = 1024
_SEGMENT = re.compile(r"^[A-Za-z0-9._+=@-]+$")


class ObjectKeyError(ValueError):
    """A key that is refused: the message says why."""


def check_key(key: str) -> str:
    """Return ``key`` if it is a plain relative path of safe segments, else raise ObjectKeyError.

    Refused: empty keys, absolute paths, ``.``/``..`` segments, empty segments (``a//b``), control
    characters, whitespace and shell metacharacters, and keys longer than 1024 bytes (S3's limit).
    """
    if not isinstance(key, str) or not key:
        raise ObjectKeyError("object key must be a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise ObjectKeyError(f"object key longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise ObjectKeyError(f"object key must be relative, got {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ObjectKeyError(f"object key has an empty, '.' or '..' segment: {key!r}")
        if not _SEGMENT.match(segment):
            raise ObjectKeyError(f"object key has characters outside [A-Za-z0-9._+=@-/]: {key!r}")
    return key


def key_segment(text: str, limit: int = 128) -> str:
    """``text`` (e.g. a run id such as ``manual__2026-11-26T22:13:43+00:00``) as one valid key segment."""
    cleaned = re.sub(r"[^A-Za-z0-9._+=@-]+", "_", text).strip(".")[:limit]
    return cleaned or "_"


def check_prefix(prefix: str) -> str:
    """A listing prefix: empty, or a valid key optionally ending in ``/``."""
    if prefix == "":
        return prefix
    check_key(prefix[:-1] if prefix.endswith("/") else prefix)
    return prefix
