"""RunToolOperator: built offline at parse time; the tool's outputs copied out of the container (the
engine's archive faked at the Docker API boundary): regular files only, keys checked."""

from __future__ import annotations

import io
import tarfile
import time
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import DAG
from airflow.sdk.exceptions import AirflowFailException

from operators.storage.hook import ObjectStoreHook, StoredObject
from operators.storage.keys import ObjectKeyError
from operators.tools.operators import RunToolOperator

ORDER_ID = "ord-00000000abcd"


def test_built_offline_and_fast_without_a_shell_or_network() -> None:
    t0 = time.monotonic()
    with DAG("order_op", schedule=None):
        op = RunToolOperator(task_id="run_tool", order="{{ ti.xcom_pull(task_ids='accept') }}")
    assert time.monotonic() - t0 < 1
    assert "order" in op.template_fields and op.docker_conn_id is None
    assert (op.network_mode, op.user, op.auto_remove, op.mount_tmp_dir) == (
        "none",
        "65534:65534",
        "never",
        False,
    )


def archive(files: dict[str, bytes], links: dict[str, str] | None = None) -> list[bytes]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo("out")
        directory.type = tarfile.DIRTYPE
        tar.addfile(directory)
        for name, body in files.items():
            info = tarfile.TarInfo(f"out/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(f"out/{name}")
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    data = buffer.getvalue()
    return [data[i : i + 700] for i in range(0, len(data), 700)]  # the engine streams chunks


class FakeStore(ObjectStoreHook):
    """The object store at its hook boundary: keeps what is put."""

    def __init__(self) -> None:
        super().__init__(bucket="b")
        self.put: dict[str, tuple[bytes, str]] = {}

    def put_stream(self, key: str, stream: Any, content_type: str = "", length: int = -1) -> StoredObject:
        body = stream.read()
        assert len(body) == length
        self.put[key] = (body, content_type)
        return StoredObject("b", key, length, "0" * 64, "etag", content_type)


def operator_with_archive(chunks: list[bytes]) -> RunToolOperator:
    op = RunToolOperator(task_id="run_tool", order={})
    op.container = {"Id": "c0ffee"}
    engine = SimpleNamespace(get_archive=lambda container, path: (iter(chunks), {"name": "out"}))
    op.__dict__["hook"] = SimpleNamespace(api_client=engine)  # the DockerHook's client, faked
    return op


def test_regular_files_are_stored_under_the_order_and_links_are_skipped() -> None:
    store = FakeStore()
    op = operator_with_archive(
        archive({"summary.json": b'{"a": 1}', "plots/h.csv": b"x\n" * 5000}, links={"secret": "/etc/shadow"})
    )
    stored = op._store_outputs(store, ORDER_ID)
    assert [s.key for s in stored] == [
        f"orders/{ORDER_ID}/outputs/summary.json",
        f"orders/{ORDER_ID}/outputs/plots/h.csv",
    ]
    assert store.put[f"orders/{ORDER_ID}/outputs/summary.json"] == (b'{"a": 1}', "application/json")
    assert store.put[f"orders/{ORDER_ID}/outputs/plots/h.csv"][0] == b"x\n" * 5000
    assert not any("secret" in key for key in store.put)


def test_a_name_that_is_no_valid_key_is_refused() -> None:
    with pytest.raises(ObjectKeyError):
        operator_with_archive(archive({"bad name;rm.txt": b"1"}))._store_outputs(FakeStore(), ORDER_ID)


def test_no_output_fails_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    ended: list[tuple] = []

    class Orders:
        def __init__(self, conn_id: str) -> None:
            pass

        def finish_order(self, order_id: str, state: str, **fields: Any) -> bool:
            ended.append((order_id, state, fields["exit_code"], fields["reason"]))
            return True

    import operators.catalog.orders

    monkeypatch.setattr(operators.catalog.orders, "OrderCatalog", Orders)
    with pytest.raises(AirflowFailException, match="wrote nothing to /order/out"):
        operator_with_archive(archive({}))._store_outputs(FakeStore(), ORDER_ID)
    assert ended == [(ORDER_ID, "failed", 0, "the tool exited 0 but wrote nothing to /order/out")]
