"""Staging between the test bed's S3 server and the `alpha` cluster's file system, both paths."""

from __future__ import annotations

import hashlib
import io
import os
import uuid

import pytest

from operators.hpc.hook import BatchHook
from operators.storage.hook import ObjectStoreHook
from operators.storage.staging import StagingError, list_outputs, stage_in, stage_out

pytestmark = pytest.mark.integration
BASE = "/home/urgent/urgentflow/jobs/tests/staging"


@pytest.fixture
def store() -> ObjectStoreHook:
    return ObjectStoreHook()


@pytest.mark.parametrize("method", ["presigned", "sftp"])
@pytest.mark.parametrize("size", [0, 1, 5 * 1024 * 1024 + 3])
def test_object_to_host_and_back(store: ObjectStoreHook, method: str, size: int) -> None:
    transport = BatchHook("alpha").transport
    tag = uuid.uuid4().hex[:10]
    data = os.urandom(size)
    store.put_stream(f"tests/{tag}/in.bin", io.BytesIO(data))

    staged = stage_in(transport, store, f"tests/{tag}/in.bin", f"{BASE}/{tag}/in.bin", method)
    assert (staged.size, staged.sha256) == (size, hashlib.sha256(data).hexdigest())

    transport.run(f"cp {BASE}/{tag}/in.bin {BASE}/{tag}/out-1.dat && echo x > {BASE}/{tag}/skip.txt").check(
        "cp"
    )
    (found,) = list_outputs(transport, f"{BASE}/{tag}", "out-*.dat")
    back = stage_out(transport, store, found, f"tests/{tag}/out-1.dat", method)
    assert (back.size, back.sha256) == (size, staged.sha256)
    assert b"".join(store.iter_verified(f"tests/{tag}/out-1.dat")) == data


@pytest.mark.parametrize("method", ["presigned", "sftp"])
def test_bytes_changed_in_the_store_are_caught_on_the_host(store: ObjectStoreHook, method: str) -> None:
    transport = BatchHook("alpha").transport
    tag = uuid.uuid4().hex[:10]
    original = os.urandom(100_000)
    put = store.put_stream(f"tests/{tag}/x.bin", io.BytesIO(original))
    tampered = bytes([original[0] ^ 1]) + original[1:]
    store.client.put_object(
        store.bucket,
        f"tests/{tag}/x.bin",
        io.BytesIO(tampered),
        len(tampered),
        metadata={"sha256": put.sha256},
    )
    with pytest.raises((StagingError, RuntimeError), match="sha256"):
        stage_in(transport, store, f"tests/{tag}/x.bin", f"{BASE}/{tag}/x.bin", method)
    listing = transport.run(f"ls -A {BASE}/{tag} 2>/dev/null || true").stdout.split()
    assert listing == [], "no file or partial file may be left behind"


def test_patterns_and_paths_are_validated() -> None:
    transport = BatchHook("alpha").transport
    with pytest.raises(ValueError, match="pattern"):
        list_outputs(transport, BASE, "*; touch /tmp/x")
    with pytest.raises(ValueError):
        list_outputs(transport, f"{BASE}/../../etc", "*")


def test_operators_stage_in_run_and_record_outputs_with_lineage(store: ObjectStoreHook) -> None:
    """The two operators around a real job's work dir; outputs land in the catalog with their producer."""
    from types import SimpleNamespace

    from operators.catalog.catalog import Catalog
    from operators.storage.operators import StageFromMachineOperator, StageToMachineOperator

    tag = uuid.uuid4().hex[:10]
    store.put_stream(f"tests/{tag}/params.json", io.BytesIO(b'{"seed": 1}'))
    catalog = Catalog()
    catalog.migrate()
    input_id = catalog.record_dataset(
        bucket=store.bucket, key=f"tests/{tag}/params.json", sha256="0" * 64, size=11
    )
    run_id = f"test-{tag}"
    context: dict = {
        "ti": SimpleNamespace(dag_id="staging_test", run_id=run_id, task_id="stage", map_index=2)
    }

    staged = StageToMachineOperator(
        task_id="in", machine="alpha", keys=[f"tests/{tag}/params.json"], dest_dir=f"{BASE}/{tag}"
    ).execute(context)  # type: ignore[arg-type]
    assert staged[0]["path"] == f"{BASE}/{tag}/tests/{tag}/params.json"
    workdir = f"{BASE}/{tag}/work"
    BatchHook("alpha").transport.run(
        f"mkdir -p {workdir} && printf a > {workdir}/r1.out && printf bb > {workdir}/r2.out"
    )
    operator = StageFromMachineOperator(
        task_id="out",
        key_prefix=f"tests/{tag}/results",
        pattern="*.out",
        job={"machine": "alpha", "job_id": "4242", "workdir": workdir},
        input_dataset_ids=[input_id],
    )
    for _try in range(2):  # a retried task records the same outputs once
        results = operator.execute(context)  # type: ignore[arg-type]
    assert sorted(r["key"] for r in results) == [f"tests/{tag}/results/r1.out", f"tests/{tag}/results/r2.out"]
    rows = catalog.datasets_of_run("staging_test", run_id)
    assert len(rows) == 2
    assert {(r["machine"], r["job_id"], r["map_index"]) for r in rows} == {("alpha", "4242", 2)}
    assert all(catalog.inputs_of(r["id"]) == [input_id] for r in rows)
