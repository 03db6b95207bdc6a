"""The test bed's S3 server (SeaweedFS on 127.0.0.1:19000), reached with the minio SDK and the recorded
connection ``object_store``: put/get with checksums, metadata, presigned GET, authentication enforced.

Start it with ``scripts/testbed start s3``; a missing test bed fails these tests, never skips them.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
import urllib3
from bed import bed_connection
from minio import Minio
from minio.error import S3Error

pytestmark = pytest.mark.integration

OBJECT_SIZE = 4 * 1024 * 1024 + 123  # a few MB, not a multiple of any chunk size
AUTH_ERRORS = {"SignatureDoesNotMatch", "AccessDenied", "InvalidAccessKeyId"}


def _client(conn: dict[str, Any], secret_key: str | None = None) -> Minio:
    extra = conn.get("extra") or {}
    return Minio(
        f"{conn['host']}:{conn['port']}",
        access_key=conn["login"],
        secret_key=secret_key if secret_key is not None else conn["password"],
        secure=bool(extra.get("secure", False)),
        region=extra.get("region", "us-east-1"),
        # no retries: a refused request must fail at once, not after urllib3's back-off
        http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=60), retries=False),
    )


@pytest.fixture(scope="module")
def conn() -> dict[str, Any]:
    conn = bed_connection("object_store")
    try:
        socket.create_connection((conn["host"], conn["port"]), timeout=3).close()
    except OSError as exc:
        pytest.fail(
            f"the test-bed S3 server does not answer on {conn['host']}:{conn['port']} ({exc}). "
            "Run `scripts/testbed start s3`.",
            pytrace=False,
        )
    return conn


@pytest.fixture(scope="module")
def client(conn: dict[str, Any]) -> Minio:
    return _client(conn)


@pytest.fixture(scope="module")
def bucket(conn: dict[str, Any], client: Minio) -> str:
    name = (conn.get("extra") or {}).get("bucket", "urgentflow")
    assert client.bucket_exists(name), f"bucket {name} is missing: `scripts/testbed start s3` creates it"
    return name


@pytest.fixture
def stored(client: Minio, bucket: str) -> Iterator[tuple[str, bytes, str]]:
    """An object of a few MB with its sha256 in the metadata: (key, bytes, sha256); removed afterwards."""
    data = os.urandom(OBJECT_SIZE)
    digest = hashlib.sha256(data).hexdigest()
    key = f"testbed-smoke/{uuid.uuid4().hex}.bin"
    client.put_object(
        bucket,
        key,
        io.BytesIO(data),
        length=len(data),
        content_type="application/octet-stream",
        metadata={"sha256": digest},
    )
    try:
        yield key, data, digest
    finally:
        client.remove_object(bucket, key)


def test_put_get_roundtrip_keeps_bytes_and_checksum(
    client: Minio, bucket: str, stored: tuple[str, bytes, str]
) -> None:
    key, data, digest = stored
    response = client.get_object(bucket, key)
    try:
        got = response.read()
    finally:
        response.close()
        response.release_conn()
    assert len(got) == len(data)
    assert hashlib.sha256(got).hexdigest() == digest
    assert got == data


def test_stat_shows_size_and_metadata(client: Minio, bucket: str, stored: tuple[str, bytes, str]) -> None:
    key, data, digest = stored
    stat = client.stat_object(bucket, key)
    assert stat.size == len(data)
    assert stat.metadata is not None
    assert stat.metadata.get("x-amz-meta-sha256") == digest, dict(stat.metadata)


def test_presigned_get_url_works_without_credentials(
    client: Minio, bucket: str, stored: tuple[str, bytes, str]
) -> None:
    key, data, digest = stored
    url = client.presigned_get_object(bucket, key, expires=timedelta(minutes=5))
    assert url.startswith("http://127.0.0.1:")
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - our own http:// server
        assert response.status == 200
        got = response.read()
    assert hashlib.sha256(got).hexdigest() == digest
    assert got == data


def test_wrong_secret_key_is_rejected(
    conn: dict[str, Any], bucket: str, stored: tuple[str, bytes, str]
) -> None:
    key, _, _ = stored
    intruder = _client(conn, secret_key="not-" + conn["password"])
    with pytest.raises(S3Error) as listing:
        intruder.bucket_exists(bucket)
    assert listing.value.code in AUTH_ERRORS, listing.value
    with pytest.raises(S3Error) as reading:
        intruder.stat_object(bucket, key)
    assert reading.value.code in AUTH_ERRORS | {"Forbidden"}, reading.value
    with pytest.raises(S3Error) as writing:
        intruder.put_object(bucket, f"testbed-smoke/{uuid.uuid4().hex}-intruder", io.BytesIO(b"x"), length=1)
    assert writing.value.code in AUTH_ERRORS, writing.value
