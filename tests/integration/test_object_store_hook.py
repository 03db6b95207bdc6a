"""ObjectStoreHook against the test bed's real S3 server."""

from __future__ import annotations

import hashlib
import io
import os
import urllib.request
import uuid
from pathlib import Path

import pytest

from operators.storage.hook import ChecksumMismatch, ObjectStoreHook

pytestmark = pytest.mark.integration


@pytest.fixture
def store() -> ObjectStoreHook:
    return ObjectStoreHook()


def key(name: str) -> str:
    return f"tests/{uuid.uuid4().hex[:12]}/{name}"


@pytest.mark.parametrize("size", [0, 1, 10 * 1024 * 1024 + 7])
def test_round_trip_keeps_bytes_and_checksum(store: ObjectStoreHook, tmp_path: Path, size: int) -> None:
    source = tmp_path / "in.bin"
    source.write_bytes(os.urandom(size))
    k = key("data.bin")
    put = store.put_file(k, source)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert (put.size, put.sha256) == (size, digest)
    assert store.stat(k).sha256 == digest
    target = tmp_path / "out.bin"
    store.get_file(k, target)
    assert target.read_bytes() == source.read_bytes()
    store.delete(k)


def test_changed_bytes_are_detected_and_leave_no_file(store: ObjectStoreHook, tmp_path: Path) -> None:
    k = key("victim.bin")
    original = os.urandom(3 * 1024 * 1024)
    put = store.put_stream(k, io.BytesIO(original))
    tampered = bytearray(original)
    tampered[1_000_000] ^= 0xFF
    # same key, same recorded checksum, one byte changed: what a corrupted transfer or disk looks like
    store.client.put_object(
        store.bucket, k, io.BytesIO(bytes(tampered)), len(tampered), metadata={"sha256": put.sha256}
    )
    target = tmp_path / "out.bin"
    with pytest.raises(ChecksumMismatch, match="sha256"):
        store.get_file(k, target)
    assert not target.exists()
    assert not list(tmp_path.glob(".*partial"))
    store.delete(k)


def test_list_presigned_and_delete(store: ObjectStoreHook) -> None:
    prefix = key("")
    for name in ("a.txt", "b/c.txt"):
        store.put_stream(prefix + name, io.BytesIO(name.encode()), content_type="text/plain")
    assert sorted(o.key for o in store.list_objects(prefix)) == [prefix + "a.txt", prefix + "b/c.txt"]
    with urllib.request.urlopen(store.presigned_get(prefix + "b/c.txt"), timeout=10) as resp:  # noqa: S310
        assert resp.read() == b"b/c.txt"
    put_url = store.presigned_put(prefix + "d.txt")
    request = urllib.request.Request(put_url, data=b"pushed", method="PUT")  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as resp:  # noqa: S310
        assert resp.status == 200
    assert store.stat(prefix + "d.txt").size == 6
    for o in store.list_objects(prefix):
        store.delete(o.key)
    assert store.list_objects(prefix) == []
