"""Jobs publishing their own outputs: a real Slurm job on `alpha` pushes its files to the test bed's S3
server through presigned links, reports their sha256 and size, and the judge checks and catalogues them."""

from __future__ import annotations

import asyncio
import hashlib
import io
import uuid
from types import SimpleNamespace
from typing import Any

import pytest

from operators.catalog.catalog import Catalog, Producer
from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook
from operators.hpc.operators import BatchJobOperator
from operators.hpc.outputs import OutputsError, record_outputs, upload_links
from operators.hpc.poller import get_poller
from operators.hpc.spec import JobSpec
from operators.hpc.states import JobState, JobStatus
from operators.storage.hook import ObjectStoreHook

pytestmark = pytest.mark.integration
BASE = "/home/urgent/urgentflow/jobs/tests/outputs"
# two files of known bytes: 3 lines of text and 100 kB of a repeated pattern
WRITE = "printf 'a\\nb\\nc\\n' > small.txt; head -c 100000 /dev/zero | tr '\\0' 'x' > big.bin"
EXPECTED = {"small.txt": b"a\nb\nc\n", "big.bin": b"x" * 100000}


def fake_ti(run_id: str, task_id: str) -> Any:
    """What the operator reads of its task instance; XCom pushes are kept on it."""
    ti = SimpleNamespace(dag_id="outputs_test", run_id=run_id, task_id=task_id, map_index=-1, xcoms={})
    ti.xcom_push = lambda key, value: ti.xcoms.update({key: value})
    return ti


def published_job(prefix: str) -> JobStatus:
    """A real job writing EXPECTED's files and publishing them under ``prefix``, watched to its end."""
    name = f"uf-it-out-{uuid.uuid4().hex[:8]}"
    spec = JobSpec(
        name=name,
        command=["bash", "-c", WRITE],
        workdir=f"{BASE}/{name}",
        uploads=upload_links("object_store", prefix, list(EXPECTED)),
    )
    hook = BatchHook("alpha")
    job_id, _ = hook.submit(spec)
    # the script holds the links: readable by its owner only
    mode = int(hook.transport.run(f"stat -c %a {spec.script_path}").check("stat").stdout.strip(), 8)
    assert not mode & 0o077, f"the script is its owner's alone: {mode:o}"

    async def watch() -> JobStatus:
        return await asyncio.wait_for(
            get_poller("hpc_alpha", "slurm", 1.0).watch(JobRef(job_id, spec.exit_file)), 120
        )

    status = asyncio.run(watch())
    assert status.state is JobState.COMPLETED, status
    return status


@pytest.fixture
def prefix() -> str:
    return f"tests/outputs/{uuid.uuid4().hex[:10]}"


def test_a_job_pushes_its_outputs_and_the_judge_catalogues_them_with_lineage(prefix: str) -> None:
    status = published_job(prefix)
    reported = {o.name: (o.sha256, o.size) for o in status.outputs}
    assert reported == {n: (hashlib.sha256(b).hexdigest(), len(b)) for n, b in EXPECTED.items()}

    store, catalog = ObjectStoreHook(), Catalog()
    catalog.migrate()
    input_id = catalog.record_dataset(bucket=store.bucket, key=f"{prefix}/in.json", sha256="1" * 64, size=2)
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    producer = Producer("outputs_test", run_id, "simulate", 3, "alpha", status.job_id)
    for _try in range(2):  # judged twice (a retry re-attaching to the job): the same rows
        published = record_outputs(
            "object_store", catalog, producer, status, list(EXPECTED), prefix, [input_id], None
        )
    assert [p["key"] for p in published] == [f"{prefix}/small.txt", f"{prefix}/big.bin"]
    for p, (file, data) in zip(published, EXPECTED.items(), strict=True):
        assert b"".join(store.iter_verified(p["key"])) == data, file  # the bytes and the recorded sha256
        row = catalog.dataset(p["dataset_id"])
        assert row is not None
        assert (row["sha256"], row["size"], row["map_index"], row["job_id"]) == (
            hashlib.sha256(data).hexdigest(),
            len(data),
            3,
            status.job_id,
        )
        assert catalog.inputs_of(p["dataset_id"]) == [input_id]
    assert len(catalog.datasets_of_run("outputs_test", run_id)) == 2
    assert store.stat(f"{prefix}/small.txt").content_type == "text/plain"


def test_an_output_not_in_the_store_as_the_job_reported_is_refused(prefix: str) -> None:
    status = published_job(prefix)
    store = ObjectStoreHook()
    store.put_stream(f"{prefix}/big.bin", io.BytesIO(b"overwritten"))
    with pytest.raises(OutputsError, match=r"big\.bin .* not in the store as reported"):
        record_outputs("object_store", None, Producer(), status, list(EXPECTED), prefix)
    with pytest.raises(OutputsError, match=r"without reporting its outputs \['other.txt'\]"):
        record_outputs("object_store", None, Producer(), status, ["other.txt"], prefix)


def test_the_operator_returns_the_published_outputs_and_a_missing_one_fails_the_task(prefix: str) -> None:
    """The worker path (deferrable=False waits in the worker with the same hook and judge)."""
    from airflow.sdk.exceptions import AirflowException

    ti = fake_ti(f"run-{uuid.uuid4().hex[:8]}", "simulate")
    common: dict[str, Any] = {
        "machine": "alpha",
        "output_prefix": prefix,
        "poll_interval": 1.0,
        "deferrable": False,
        "catalog_conn_id": "catalog_db",
    }
    op = BatchJobOperator(task_id="simulate", command=["bash", "-c", WRITE], outputs=list(EXPECTED), **common)
    context: Any = {"ti": ti}
    job = op.execute(context)
    assert job["state"] == "COMPLETED"
    assert [o["key"] for o in job["outputs"]] == [f"{prefix}/small.txt", f"{prefix}/big.bin"]
    assert all(o["dataset_id"] for o in job["outputs"])

    missing = BatchJobOperator(
        task_id="missing", command=["bash", "-c", "echo ran"], outputs=["never.txt"], **common
    )
    with pytest.raises(AirflowException, match=r"output never\.txt was not written"):
        other: Any = {"ti": fake_ti(ti.run_id, "missing")}
        missing.execute(other)
