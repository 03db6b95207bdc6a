"""The S3 server stopped in the middle of an upload: the upload is retried or fails clearly, and no
partial object is ever visible."""

from __future__ import annotations

import hashlib
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from operators.storage.hook import ObjectStoreHook

pytestmark = [pytest.mark.integration, pytest.mark.exclusive]  # stops the S3 server
TESTBED = Path(__file__).resolve().parents[2] / "scripts" / "testbed"


class SlowStream:
    """200 MiB produced slowly enough that the server can be stopped in the middle."""

    def __init__(self) -> None:
        self.left = 200 * 1024 * 1024
        self.sha = hashlib.sha256()
        self.block = os.urandom(1024 * 1024)

    def read(self, n: int = -1) -> bytes:
        n = min(self.left, len(self.block) if n < 0 else min(n, len(self.block)))
        self.left -= n
        time.sleep(0.005)
        data = self.block[:n]
        self.sha.update(data)
        return data


def test_upload_survives_or_fails_cleanly_when_s3_stops() -> None:
    store = ObjectStoreHook()
    key = f"tests/outage-{uuid.uuid4().hex[:10]}/big.bin"
    stream = SlowStream()
    outcome: dict = {}

    def upload() -> None:
        try:
            outcome["stored"] = store.put_stream(key, stream)
        except Exception as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=upload)
    worker.start()
    time.sleep(1.0)
    subprocess.run([str(TESTBED), "stop", "s3"], check=True, capture_output=True, timeout=120)
    time.sleep(3)
    subprocess.run([str(TESTBED), "start", "s3"], check=True, capture_output=True, timeout=120)
    worker.join(timeout=300)
    assert not worker.is_alive(), "the upload neither finished nor failed within 5 minutes"

    if "stored" in outcome:  # retried through the outage: then it must be whole
        assert outcome["stored"].sha256 == stream.sha.hexdigest()
        assert store.stat(key).sha256 == stream.sha.hexdigest()
        store.delete(key)
    else:
        message = str(outcome["error"])
        assert message, "the failure must say what happened"
        assert not store.exists(key), "a failed upload must not leave a visible object"
