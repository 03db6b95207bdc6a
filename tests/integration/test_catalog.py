"""The catalog on the machine's real Postgres: migrations, idempotent writes, lineage, job history."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import psycopg
import psycopg2
import pytest
from bed import bed_connection

from operators.catalog.catalog import Catalog, Producer
from operators.catalog.migrations import migration_files

pytestmark = pytest.mark.integration


@pytest.fixture
def catalog(monkeypatch: pytest.MonkeyPatch) -> Iterator[Catalog]:
    """A catalog in a database of its own, created empty and dropped afterwards."""
    base = bed_connection("catalog_db")
    name = f"uf_catalog_test_{uuid.uuid4().hex[:10]}"
    admin = psycopg2.connect(host=base["host"], port=base["port"], user=base["login"], dbname="postgres")
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    monkeypatch.setenv("AIRFLOW_CONN_CATALOG_TEST", json.dumps({**base, "schema": name}))
    try:
        yield Catalog("catalog_test")
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


def test_migrations_apply_once(catalog: Catalog) -> None:
    assert catalog.migrate() == [version for version, _ in migration_files()]
    assert catalog.migrate() == []


def test_a_retried_write_leaves_one_row_and_lineage_links(catalog: Catalog) -> None:
    catalog.migrate()
    producer = Producer(dag_id="wf", run_id="r1", task_id="stage_in")
    terrain = catalog.record_dataset(
        bucket="b", key="in/terrain.npy", sha256="a" * 64, size=10, producer=producer
    )
    assert (
        catalog.record_dataset(bucket="b", key="in/terrain.npy", sha256="a" * 64, size=10, producer=producer)
        == terrain
    )
    outputs = []
    for member in range(3):
        member_producer = Producer(
            dag_id="wf",
            run_id="r1",
            task_id="stage_out",
            map_index=member,
            machine="alpha",
            job_id=str(100 + member),
        )
        for _try in range(2):  # a retried task records the same output again
            outputs.append(
                catalog.record_dataset(
                    bucket="b",
                    key=f"out/{member}.tif",
                    sha256=f"{member}" * 64,
                    size=5,
                    producer=member_producer,
                    inputs=[terrain],
                )
            )
    assert len(set(outputs)) == 3
    rows = catalog.datasets_of_run("wf", "r1")
    assert len(rows) == 4
    assert {(r["map_index"], r["job_id"]) for r in rows if r["task_id"] == "stage_out"} == {
        (0, "100"),
        (1, "101"),
        (2, "102"),
    }
    assert all(catalog.inputs_of(o) == [terrain] for o in set(outputs))


def test_job_state_history(catalog: Catalog) -> None:
    catalog.migrate()
    for state in ("PENDING", "RUNNING", "RUNNING", "FAILED"):
        catalog.record_job(
            machine="alpha",
            native_id="7",
            name="uf-x",
            state=state,
            exit_code=3 if state == "FAILED" else None,
        )
    catalog.record_job(machine="beta", native_id="7", name="uf-y", state="COMPLETED", exit_code=0)
    history = catalog.job_history("alpha", "7")
    assert [h["state"] for h in history] == ["PENDING", "RUNNING", "FAILED"]
    assert history[-1]["exit_code"] == 3
    assert [h["state"] for h in catalog.job_history("beta", "7")] == ["COMPLETED"]


def test_a_late_submitted_record_keeps_the_state_the_job_already_has(catalog: Catalog) -> None:
    """A job submitted ahead for a sibling is recorded after its batch: its own trigger may have recorded
    its end by then."""
    catalog.migrate()
    catalog.record_job(machine="alpha", native_id="8", name="uf-z", state="COMPLETED", exit_code=0)
    catalog.record_job(machine="alpha", native_id="8", name="uf-z", state="SUBMITTED")
    (job,) = catalog.jobs_on("alpha")
    assert (job["state"], job["exit_code"]) == ("COMPLETED", 0)
    assert sorted(h["state"] for h in catalog.job_history("alpha", "8")) == ["COMPLETED", "SUBMITTED"]
    catalog.record_job(machine="alpha", native_id="9", name="uf-w", state="SUBMITTED")
    catalog.record_job(machine="alpha", native_id="9", name="uf-w", state="FAILED", exit_code=3)
    assert {(j["native_id"], j["state"]) for j in catalog.jobs_on("alpha")} == {
        ("8", "COMPLETED"),
        ("9", "FAILED"),
    }


def test_a_dataset_whose_lineage_fails_is_not_recorded(catalog: Catalog) -> None:
    catalog.migrate()
    producer = Producer(dag_id="wf", run_id="r1", task_id="stage_out")
    terrain = catalog.record_dataset(
        bucket="b", key="in/terrain.npy", sha256="a" * 64, size=1, producer=producer
    )
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        catalog.record_dataset(
            bucket="b",
            key="out/0.tif",
            sha256="b" * 64,
            size=1,
            producer=producer,
            inputs=[terrain, terrain + 99],
        )
    assert [d["key"] for d in catalog.datasets_of_run("wf", "r1")] == ["in/terrain.npy"]


def test_a_job_whose_state_row_fails_is_not_recorded(catalog: Catalog) -> None:
    catalog.migrate()
    with catalog._transaction() as cur:  # a constraint only this throw-away database has
        cur.execute("ALTER TABLE job_states ADD CONSTRAINT refuse_lost CHECK (state <> 'LOST')")
    catalog.record_job(machine="alpha", native_id="7", name="uf-x", state="RUNNING")
    with pytest.raises(psycopg.errors.CheckViolation):
        catalog.record_job(machine="alpha", native_id="7", name="uf-x", state="LOST", exit_code=1)
    (job,) = catalog.jobs_on("alpha")
    assert (job["state"], job["exit_code"]) == ("RUNNING", None)
    assert [h["state"] for h in catalog.job_history("alpha", "7")] == ["RUNNING"]
