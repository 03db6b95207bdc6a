"""ObjectStoreHook: the object store (MinIO / any S3) through the minio SDK, on the ``object_store`` Connection.

Every object written here carries its sha256 as metadata (``x-amz-meta-sha256``), computed while the
bytes stream, and every read verifies it while streaming: a changed byte anywhere fails loudly.
Transfers are multipart with a fixed part size, so memory stays constant whatever the object size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from airflow.sdk import BaseHook

from operators.connection_cache import cached_connection
from operators.storage.keys import check_key, check_prefix

PART_SIZE = 16 * 1024 * 1024
CHUNK = 1024 * 1024
SHA_META = "sha256"


class ChecksumMismatch(RuntimeError):
    """The bytes read do not hash to the sha256 recorded when they were written."""


@dataclass(frozen=True)
class StoredObject:
    bucket: str
    key: str
    size: int
    sha256: str
    etag: str
    content_type: str = "application/octet-stream"
    last_modified: datetime | None = None


class Readable(Protocol):
    def read(self, n: int = -1, /) -> bytes: ...


class ChunkReader:
    """A file-like ``read`` over an iterator of byte chunks (an SFTP stream, a Docker archive), so it can
    be uploaded like a file; constant memory."""

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


class _BackgroundSha256:
    """sha256 fed from a second thread (hashlib releases the GIL on large buffers), so hashing one
    chunk overlaps moving the next; updates stay in order (one in flight at a time)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sha256")
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        if self._pending is not None:
            self._pending.result()
        self._pending = self._pool.submit(self._sha.update, data)

    def hexdigest(self) -> str:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        self._pool.shutdown(wait=True)
        return self._sha.hexdigest()


class _HashingReader:
    """Wraps a binary stream: counts and hashes what the SDK reads from it."""

    def __init__(self, raw: Readable) -> None:
        self.raw = raw
        self.sha = _BackgroundSha256()
        self.size = 0

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.sha.update(data)
        self.size += len(data)
        return data


class ObjectStoreHook(BaseHook):
    conn_name_attr = "object_store_conn_id"
    default_conn_name = "object_store"
    conn_type = "generic"
    hook_name = "urgentflow object store"

    def __init__(self, object_store_conn_id: str = default_conn_name, bucket: str | None = None) -> None:
        super().__init__()
        self.object_store_conn_id = object_store_conn_id
        self._bucket = bucket

    @cached_property
    def _conn(self) -> Any:
        return cached_connection(self.object_store_conn_id)

    @cached_property
    def bucket(self) -> str:
        bucket = self._bucket or self._conn.extra_dejson.get("bucket")
        if not bucket:
            raise ValueError(f"no bucket: pass bucket= or set extra.bucket on {self.object_store_conn_id}")
        return str(bucket)

    @cached_property
    def _endpoint(self) -> str:
        conn = self._conn
        return f"{conn.host}:{conn.port}" if conn.port else str(conn.host)

    @cached_property
    def _secure(self) -> bool:
        return bool(self._conn.extra_dejson.get("secure", True))

    @cached_property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the store's API: where presigned links point."""
        return f"{'https' if self._secure else 'http'}://{self._endpoint}"

    @cached_property
    def client(self) -> Any:
        import urllib3
        from minio import Minio

        conn = self._conn
        extra = conn.extra_dejson
        retries = urllib3.Retry(
            total=5, backoff_factor=0.5, status_forcelist=(500, 502, 503, 504), allowed_methods=None
        )
        return Minio(
            self._endpoint,
            access_key=conn.login,
            secret_key=conn.password,
            secure=self._secure,
            region=extra.get("region"),
            http_client=urllib3.PoolManager(retries=retries, timeout=urllib3.Timeout(connect=10, read=300)),
        )

    def get_conn(self) -> Any:
        return self.client

    def put_stream(
        self, key: str, stream: Readable, content_type: str = "application/octet-stream", length: int = -1
    ) -> StoredObject:
        """Upload a stream in parts (``length`` -1: unknown, read to the end); its sha256 becomes metadata."""
        check_key(key)
        reader = _HashingReader(stream)
        result = self.client.put_object(
            self.bucket, key, reader, length=length, part_size=PART_SIZE, content_type=content_type
        )
        digest = reader.sha.hexdigest()
        # S3 metadata is fixed at upload start; a copy onto itself sets it (server-side, no bytes move).
        self.set_checksum(key, digest, content_type)
        return StoredObject(self.bucket, key, reader.size, digest, result.etag, content_type)

    def set_checksum(self, key: str, sha256: str, content_type: str = "application/octet-stream") -> None:
        """Record ``sha256`` on an object written by someone else (e.g. a presigned PUT from an HPC host).

        A server-side copy onto itself (no bytes through us); objects over the 5 GiB CopyObject limit
        are copied as a multipart copy of 5 GiB ranges (``compose_object`` picks the form).
        """
        from minio.commonconfig import ComposeSource

        self.client.compose_object(
            self.bucket,
            check_key(key),
            [ComposeSource(self.bucket, key)],
            metadata={SHA_META: sha256, "Content-Type": content_type},
        )

    def put_file(
        self, key: str, path: str | Path, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        with open(path, "rb") as handle:
            return self.put_stream(key, handle, content_type, length=os.fstat(handle.fileno()).st_size)

    def stat(self, key: str) -> StoredObject:
        check_key(key)
        info = self.client.stat_object(self.bucket, key)
        meta = {k.lower(): v for k, v in (info.metadata or {}).items()}
        return StoredObject(
            self.bucket,
            key,
            info.size,
            meta.get(f"x-amz-meta-{SHA_META}", ""),
            info.etag,
            info.content_type or "application/octet-stream",
            info.last_modified,
        )

    def stat_if_exists(self, key: str) -> StoredObject | None:
        """``stat``, or None when there is no such object."""
        from minio.error import S3Error

        try:
            return self.stat(key)
        except S3Error as exc:
            if exc.code in ("NoSuchKey", "NoSuchObject", "NotFound"):
                return None
            raise

    def exists(self, key: str) -> bool:
        return self.stat_if_exists(key) is not None

    def iter_verified(self, key: str) -> Iterator[bytes]:
        """Stream an object's bytes; raises ChecksumMismatch at the end if they do not match."""
        expected = self.stat(key).sha256
        sha = _BackgroundSha256()
        response = self.client.get_object(self.bucket, key)
        try:
            for chunk in response.stream(CHUNK):
                sha.update(chunk)
                yield chunk
        finally:
            response.close()
            response.release_conn()
            digest = sha.hexdigest()
        if expected and digest != expected:
            raise ChecksumMismatch(f"{self.bucket}/{key}: sha256 {digest} != recorded {expected}")

    def get_file(self, key: str, path: str | Path) -> StoredObject:
        """Download to ``path`` (via a temporary name: a failed or corrupted transfer leaves nothing)."""
        target = Path(path)
        partial = target.with_name(f".{target.name}.partial")
        try:
            with open(partial, "wb") as handle:
                for chunk in self.iter_verified(key):
                    handle.write(chunk)
            partial.replace(target)
        finally:
            partial.unlink(missing_ok=True)
        return self.stat(key)

    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        check_prefix(prefix)
        return [
            StoredObject(
                self.bucket, o.object_name, o.size or 0, "", o.etag or "", last_modified=o.last_modified
            )
            for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
        ]

    def delete(self, key: str) -> None:
        self.client.remove_object(self.bucket, check_key(key))

    def presigned_get(
        self, key: str, expires: timedelta = timedelta(hours=1), *, bucket: str | None = None
    ) -> str:
        """A download link to ``key`` in ``bucket`` (the hook's own by default). The store answers it as an
        attachment of type ``application/octet-stream`` whatever the object was stored as, so a browser
        saves it instead of rendering it as a page of the store's origin."""
        name = check_key(key).rsplit("/", 1)[-1]  # [A-Za-z0-9._+=@-] only: safe between the quotes
        return self.client.presigned_get_object(
            bucket or self.bucket,
            key,
            expires=expires,
            response_headers={
                "response-content-type": "application/octet-stream",
                "response-content-disposition": f'attachment; filename="{name}"',
            },
        )

    def presigned_put(self, key: str, expires: timedelta = timedelta(hours=1)) -> str:
        return self.client.presigned_put_object(self.bucket, check_key(key), expires=expires)
