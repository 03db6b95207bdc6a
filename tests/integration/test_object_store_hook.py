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


def test_object_trigger_fires_once_the_objects_arrive(store: ObjectStoreHook) -> None:
    import asyncio

    from operators.storage.sensors import ObjectTrigger, missing

    prefix = key("")
    trigger = ObjectTrigger(
        keys=[prefix + "perimeter.geojson"],
        prefixes=[prefix + "weather/"],
        object_store_conn_id="object_store",
        poll_interval=0.2,
    )
    assert missing(store, trigger.keys, trigger.prefixes) == trigger.keys + trigger.prefixes

    async def scenario() -> dict:
        events = trigger.run()
        first = asyncio.ensure_future(events.__anext__())
        await asyncio.sleep(0.6)
        assert not first.done(), "fired before the objects existed"
        await asyncio.to_thread(store.put_stream, prefix + "perimeter.geojson", io.BytesIO(b"{}"))
        await asyncio.to_thread(store.put_stream, prefix + "weather/wind.json", io.BytesIO(b"{}"))
        event = await asyncio.wait_for(first, 10)
        return event.payload

    assert asyncio.run(scenario())["status"] == "found"
    assert missing(store, trigger.keys, trigger.prefixes) == []


@pytest.mark.bed("s3")  # long: no exclusive test of another server waits for it
def test_one_gigabyte_round_trip(store: ObjectStoreHook, tmp_path: Path) -> None:
    """1 GiB through the hook both ways, written and read in chunks (constant memory), checksums equal."""
    source = tmp_path / "big.bin"
    sha = hashlib.sha256()
    block = os.urandom(4 * 1024 * 1024)
    with open(source, "wb") as handle:
        for i in range(256):
            chunk = i.to_bytes(4, "big") + block[4:]
            sha.update(chunk)
            handle.write(chunk)
    k = key("big.bin")
    try:
        put = store.put_file(k, source)
        assert (put.size, put.sha256) == (1024**3, sha.hexdigest())
        source.unlink()
        target = tmp_path / "back.bin"
        got = store.get_file(k, target)
        assert got.sha256 == sha.hexdigest() and target.stat().st_size == 1024**3
    finally:
        store.delete(k)


class _Generated:
    """``size`` bytes made on the fly (no disk, constant memory): a 4 MiB block stamped with its index."""

    def __init__(self, size: int) -> None:
        self.left = size
        self.index = 0
        self.block = os.urandom(4 * 1024 * 1024)
        self.pending = b""
        self.sha = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        while len(self.pending) < n and self.left > len(self.pending):
            chunk = self.index.to_bytes(8, "big") + self.block[8:]
            self.index += 1
            self.pending += chunk[: self.left - len(self.pending)]
        data, self.pending = self.pending[:n], self.pending[n:]
        self.left -= len(data)
        self.sha.update(data)
        return data


@pytest.mark.bed("s3")  # long: no exclusive test of another server waits for it
def test_object_over_the_5_gib_copy_limit_gets_its_checksum(store: ObjectStoreHook) -> None:
    """Recording the sha256 is a server-side copy; S3 CopyObject stops at 5 GiB, so larger objects take
    the multipart-copy path. The object is read back in full and verified."""
    size = 5 * 1024**3 + 3 * 1024 * 1024 + 1
    source = _Generated(size)
    k = key("huge.bin")
    try:
        put = store.put_stream(k, source)
        assert (put.size, put.sha256) == (size, source.sha.hexdigest())
        assert (store.stat(k).size, store.stat(k).sha256) == (size, put.sha256)
        assert sum(len(chunk) for chunk in store.iter_verified(k)) == size
    finally:
        store.delete(k)
