"""Jobs fetching their own inputs: real Slurm jobs on `alpha` fetch objects from the test bed's S3 server
through presigned links, check them against the recorded sha256 and share one copy per run; a tampered
object fails the job before its command, a missing one is refused before anything is submitted."""

from __future__ import annotations

import hashlib
import io
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowException

from operators.hpc.hook import BatchHook
from operators.hpc.operators import BatchJobOperator
from operators.storage.hook import ObjectStoreHook

pytestmark = pytest.mark.integration
DATA = {"landscape.npz": b"\x00\x01land" * 20000, "scenario.json": b'{"wind": 6}\n'}
# the job checks what it was given and records the inode of its landscape (shared with the run's copy)
CHECK = "sha256sum -c sums.txt && stat -c %i landscape.npz > inode && touch ran"


def fake_ti(run_id: str, map_index: int) -> Any:
    """What the operator reads of its task instance; XCom pushes are kept on it."""
    ti = SimpleNamespace(
        dag_id="inputs_test", run_id=run_id, task_id="simulate", map_index=map_index, xcoms={}
    )
    ti.xcom_push = lambda key, value: ti.xcoms.update({key: value})
    return ti


@pytest.fixture
def inputs() -> list[str]:
    """The inputs in the store (sha256 recorded) and, beside them, the sums the job checks them with."""
    store, prefix = ObjectStoreHook(), f"tests/inputs/{uuid.uuid4().hex[:10]}"
    sums = "".join(f"{hashlib.sha256(body).hexdigest()}  {name}\n" for name, body in DATA.items())
    keys = []
    for name, body in {**DATA, "sums.txt": sums.encode()}.items():
        keys.append(store.put_stream(f"{prefix}/{name}", io.BytesIO(body), length=len(body)).key)
    return keys


def member(keys: list[str], command: str = CHECK) -> BatchJobOperator:
    return BatchJobOperator(
        task_id="simulate",
        machine="alpha",
        command=["bash", "-c", command],
        inputs=keys,
        poll_interval=1.0,
        deferrable=False,
        catalog_conn_id=None,
    )


def test_the_members_of_a_run_get_their_inputs_checked_and_share_one_copy(inputs: list[str]) -> None:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    jobs = []
    for index in range(2):
        context: Any = {"ti": fake_ti(run_id, index)}
        jobs.append(member(inputs).execute(context))
    assert [j["state"] for j in jobs] == ["COMPLETED", "COMPLETED"]
    transport = BatchHook("alpha").transport
    inodes = [transport.run(f"cat {j['workdir']}/inode").check("inode").stdout.strip() for j in jobs]
    kept = (
        f"{jobs[0]['workdir'].rsplit('/', 1)[0]}/.inputs/{hashlib.sha256(DATA['landscape.npz']).hexdigest()}"
    )
    assert inodes[0] == inodes[1] == transport.run(f"stat -c %i {kept}").check("kept").stdout.strip()
    mode = int(transport.run(f"stat -c %a {kept}").check("mode").stdout.strip(), 8)
    assert not mode & 0o222, f"the run's copy is read-only: {mode:o}"


def test_a_tampered_input_fails_the_job_before_its_command_and_a_missing_one_submits_nothing(
    inputs: list[str],
) -> None:
    store = ObjectStoreHook()
    landscape = inputs[0]
    store.set_checksum(landscape, "0" * 64)  # the store's record no longer matches the bytes
    context: Any = {"ti": fake_ti(f"run-{uuid.uuid4().hex[:8]}", 0)}
    with pytest.raises(AirflowException, match=r"could not fetch input landscape\.npz with sha256 0{64}"):
        member(inputs).execute(context)
    workdir = context["ti"].xcoms["batch_job"]["workdir"]
    assert BatchHook("alpha").transport.run(f"test -e {workdir}/ran").exit_status == 1, (
        "its command never ran"
    )

    missing = f"{landscape.rsplit('/', 1)[0]}/absent.npz"
    again: Any = {"ti": fake_ti(f"run-{uuid.uuid4().hex[:8]}", 0)}
    with pytest.raises(ValueError, match=r"input .*absent\.npz is not in the object store"):
        member([missing]).execute(again)
    assert "batch_job" not in again["ti"].xcoms, "nothing submitted"
