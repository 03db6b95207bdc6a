"""Embedded mode keeps everything across a restart: `make stop` then `make up` (the runtime and the test
bed's S3 server stopped and started again) leaves the metadata DB (runs), the catalog and the objects as
they were."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from airflow_client import AirflowClient

from operators.catalog.catalog import Catalog, Producer
from operators.storage.hook import ObjectStoreHook

pytestmark = [pytest.mark.e2e, pytest.mark.exclusive("s3")]  # stops the runtime and the S3 server
ROOT = Path(__file__).resolve().parents[2]
DAG = "quickstart"


def run(*command: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"


def test_stop_and_up_keep_runs_catalog_and_objects(airflow: AirflowClient) -> None:
    airflow.wait_for_dag(DAG, timeout=90)
    airflow.unpause(DAG)
    run_id = airflow.trigger(DAG, {"members": 2, "size": 32, "seed": 3})["dag_run_id"]
    assert airflow.wait_for_run(DAG, run_id, timeout=300)["state"] == "success"
    body = uuid.uuid4().bytes * 1000
    stored = ObjectStoreHook().put_stream(
        f"drill/restart/{uuid.uuid4().hex}.bin", io.BytesIO(body), length=len(body)
    )
    dataset_id = Catalog().record_stored(stored, Producer(task_id="restart-test"))

    # what `make stop` and `make up` do, minus the parts other tests need running (Slurm, Docker)
    run(sys.executable, "scripts/runtime.py", "stop")
    run("scripts/testbed", "stop", "s3")
    run("scripts/testbed", "start", "s3", "catalog")
    run(sys.executable, "scripts/runtime.py", "start")

    assert airflow.get_run(DAG, run_id)["state"] == "success"
    assert b"".join(ObjectStoreHook().iter_verified(stored.key)) == body
    row = Catalog().dataset(dataset_id) or {}
    assert (row.get("key"), row.get("sha256")) == (stored.key, stored.sha256)
    rerun = airflow.trigger(DAG, {"members": 1, "size": 32, "seed": 4})["dag_run_id"]
    assert airflow.wait_for_run(DAG, rerun, timeout=300)["state"] == "success"
