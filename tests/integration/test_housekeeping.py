"""Housekeeping against the test bed's real Postgres catalog and real S3 server.

Both are shared with other tests running at the same time, so this test scopes every run to what it
created: catalog rows carry timestamps in the year 2000 and the runs' ``now`` is 2000-06-01 (nothing
else is that old), and the reconciliation runs only under this test's own key prefix.
"""

from __future__ import annotations

import io
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operators.catalog.catalog import Catalog, Producer
from operators.catalog.housekeeping import (
    Policy,
    Reconciliation,
    check_datasets,
    find_orphans,
    housekeep,
    prune_catalog,
)
from operators.storage.hook import ObjectStoreHook

pytestmark = [pytest.mark.integration, pytest.mark.exclusive]  # prunes the whole catalog by date

THEN = datetime(2000, 6, 1, tzinfo=UTC)
OLD = datetime(2000, 1, 1, tzinfo=UTC)  # past every 30-day retention at THEN
RECENT = datetime(2000, 5, 25, tzinfo=UTC)  # within it
POLICY = Policy(
    machine_status_days=30, selection_days=30, service_days=30, job_days=30, notice_days=30, batch_size=2
)


def execute(catalog: Catalog, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with catalog.hook.get_conn() as conn, conn.cursor() as cur:
        cur.execute(sql, params)
        rows = cur.fetchall() if cur.description else []
        conn.commit()
        return rows


@pytest.fixture
def tag() -> str:
    return f"hk-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def catalog(tag: str) -> Iterator[Catalog]:
    catalog = Catalog()
    catalog.ensure_schema()
    try:
        yield catalog
    finally:
        execute(catalog, "DELETE FROM machine_status WHERE machine = %s", (tag,))
        execute(catalog, "DELETE FROM machine_selections WHERE dag_id = %s", (tag,))
        execute(catalog, "DELETE FROM services WHERE dag_id = %s", (tag,))
        execute(catalog, "DELETE FROM datasets WHERE starts_with(key, %s)", (f"housekeeping-tests/{tag}/",))
        execute(catalog, "DELETE FROM jobs WHERE machine = %s", (tag,))
        execute(catalog, "DELETE FROM job_notices WHERE machine = %s", (tag,))


@pytest.fixture
def store(tag: str) -> Iterator[ObjectStoreHook]:
    store = ObjectStoreHook()
    try:
        yield store
    finally:
        for obj in store.list_objects(f"housekeeping-tests/{tag}/"):
            store.delete(obj.key)


def seed_catalog(catalog: Catalog, tag: str) -> None:
    for at in (OLD, RECENT):
        execute(
            catalog,
            "INSERT INTO machine_status (machine, observed_at, state) VALUES (%s, %s, 'up')",
            (tag, at),
        )
        execute(
            catalog,
            "INSERT INTO machine_selections (dag_id, run_id, task_id, request, candidates, created_at)"
            " VALUES (%s, %s, 't', '{}', '[]', %s)",
            (tag, at.isoformat(), at),
        )
    services = {"stopped-old": ("stopped", OLD), "reaped-old": ("reaped:expired", OLD)}
    services |= {"running-old": ("running", OLD), "stopped-recent": ("stopped", RECENT)}
    for name, (state, at) in services.items():
        execute(
            catalog,
            "INSERT INTO services (id, dag_id, state, created_at, updated_at) VALUES (%s, %s, %s, %s, %s)",
            (f"{tag}-{name}", tag, state, at, at),
        )
    for at in (OLD, RECENT):
        execute(
            catalog,
            "INSERT INTO job_notices (machine, job_name, nonce, received_at) VALUES (%s, 'uf-1', %s, %s)",
            (tag, secrets.token_hex(16), at),
        )
    jobs = {"1": ("COMPLETED", OLD), "2": ("FAILED", OLD), "3": ("RUNNING", OLD), "4": ("COMPLETED", RECENT)}
    for native_id, (state, at) in jobs.items():
        job_id = catalog.record_job(machine=tag, native_id=native_id, name=f"uf-{native_id}", state=state)
        execute(catalog, "UPDATE jobs SET updated_at = %s WHERE id = %s", (at, job_id))


def left(catalog: Catalog, tag: str) -> dict[str, list[Any]]:
    def column(sql: str) -> list[Any]:
        return sorted(r[0] for r in execute(catalog, sql, (tag,)))

    return {
        "machine_status": column("SELECT observed_at FROM machine_status WHERE machine = %s"),
        "machine_selections": column("SELECT created_at FROM machine_selections WHERE dag_id = %s"),
        "services": column("SELECT id FROM services WHERE dag_id = %s"),
        "jobs": column("SELECT native_id FROM jobs WHERE machine = %s"),
        "job_states": column(
            "SELECT j.native_id FROM job_states s JOIN jobs j ON j.id = s.job_id WHERE j.machine = %s"
        ),
        "job_notices": column("SELECT received_at FROM job_notices WHERE machine = %s"),
    }


def test_prune_removes_exactly_the_old_final_unreferenced_rows(catalog: Catalog, tag: str) -> None:
    seed_catalog(catalog, tag)
    # job 2 produced a dataset: it stays, whatever its age
    catalog.record_dataset(
        bucket="b",
        key=f"housekeeping-tests/{tag}/member.npz",
        sha256="a" * 64,
        size=1,
        producer=Producer(machine=tag, job_id="2"),
    )
    before = left(catalog, tag)
    expected = {"machine_status": 1, "machine_selections": 1, "services": 2, "jobs": 1, "job_notices": 1}

    dry, _ = prune_catalog(catalog, replace(POLICY, dry_run=True), THEN)
    assert dry == expected
    assert left(catalog, tag) == before

    pruned, more_left = prune_catalog(catalog, POLICY, THEN)  # batches of 2: several rounds
    assert (pruned, more_left) == (expected, [])
    assert left(catalog, tag) == {
        "machine_status": [RECENT],
        "machine_selections": [RECENT],
        "services": [f"{tag}-running-old", f"{tag}-stopped-recent"],
        "jobs": ["2", "3", "4"],
        "job_states": ["2", "3", "4"],
        "job_notices": [RECENT],
    }
    assert prune_catalog(catalog, POLICY, THEN) == ({t: 0 for t in expected}, [])


def put(store: ObjectStoreHook, key: str, body: bytes) -> Any:
    return store.put_stream(key, io.BytesIO(body), length=len(body))


def seed_store(catalog: Catalog, store: ObjectStoreHook, prefix: str) -> dict[str, Any]:
    """A good dataset, a changed one, one whose object is gone, and an orphan object."""
    good = put(store, prefix + "good.bin", b"good")
    catalog.record_stored(good, Producer(dag_id="housekeeping-tests"))
    changed = put(store, prefix + "changed.bin", b"changed")
    catalog.record_dataset(bucket=store.bucket, key=changed.key, sha256="0" * 64, size=changed.size)
    gone = catalog.record_dataset(bucket=store.bucket, key=prefix + "gone.bin", sha256="1" * 64, size=3)
    orphan = put(store, prefix + "run-1/orphan.bin", b"nobody recorded me")
    return {"good": good.key, "changed": changed, "gone": gone, "orphan": orphan.key}


def reconcile(catalog: Catalog, store: ObjectStoreHook, policy: Policy, now: datetime, prefix: str) -> Any:
    found = Reconciliation()
    check_datasets(catalog, store, policy, [prefix], found)
    find_orphans(catalog, store, policy, [prefix], now, found)
    return found


def test_one_run_prunes_and_reports(catalog: Catalog, store: ObjectStoreHook, tag: str) -> None:
    prefix = f"housekeeping-tests/{tag}/"
    seed_catalog(catalog, tag)
    made = seed_store(catalog, store, prefix)
    summary = housekeep(catalog, store, POLICY, THEN, prefixes=[prefix])
    assert summary["counts"] == {
        "pruned_machine_status": 1,
        "pruned_machine_selections": 1,
        "pruned_services": 2,
        "pruned_jobs": 2,  # no dataset names these jobs here
        "pruned_job_notices": 1,
        "datasets_checked": 3,
        "datasets_missing": 1,
        "datasets_changed": 1,
        "orphans": 0,
        "orphans_deleted": 0,
        "objects_in_grace": 3,  # written after THEN: never judged
    }
    assert summary["reported"]["missing"] == [
        {"dataset_id": made["gone"], "key": prefix + "gone.bin", "problem": "object missing"}
    ]
    (diff,) = summary["reported"]["changed"]
    assert diff["key"] == made["changed"].key and made["changed"].sha256 in diff["problem"]
    assert (summary["dry_run"], summary["more_left"], summary["prefixes"]) == (False, [], [prefix])
    assert left(catalog, tag)["jobs"] == ["3", "4"]


def test_orphans_are_judged_after_the_grace_and_deleted_only_when_allowed(
    catalog: Catalog, store: ObjectStoreHook, tag: str
) -> None:
    prefix = f"housekeeping-tests/{tag}/"
    made = seed_store(catalog, store, prefix)
    now = datetime.now(UTC)
    later = now + timedelta(hours=25)

    fresh = reconcile(catalog, store, Policy(delete_orphans=True), now, prefix)
    assert (fresh.orphans, fresh.in_grace, fresh.deleted) == ([], 3, 0)

    for policy in (Policy(), Policy(delete_orphans=True, dry_run=True)):
        found = reconcile(catalog, store, policy, later, prefix)
        assert (found.orphans, found.deleted, found.in_grace) == ([made["orphan"]], 0, 0)
        assert store.exists(made["orphan"])

    deleting = reconcile(catalog, store, Policy(delete_orphans=True), later, prefix)
    assert (deleting.orphans, deleting.deleted) == ([made["orphan"]], 1)
    assert sorted(o.key for o in store.list_objects(prefix)) == [made["changed"].key, made["good"]]

    again = reconcile(catalog, store, Policy(delete_orphans=True), later, prefix)
    assert (again.orphans, again.deleted) == ([], 0)
    # reported problems stay reported, and their rows stay: provenance is never deleted silently
    assert (len(again.missing), len(again.changed), again.checked) == (1, 1, 3)
    assert catalog.dataset(made["gone"]) is not None


def test_dataset_check_is_bounded(catalog: Catalog, store: ObjectStoreHook, tag: str) -> None:
    prefix = f"housekeeping-tests/{tag}/"
    for i in range(5):
        catalog.record_dataset(bucket=store.bucket, key=f"{prefix}{i}.bin", sha256=f"{i}" * 64, size=1)
    found = Reconciliation()
    check_datasets(catalog, store, Policy(batch_size=2, max_batches=2), [prefix], found)
    assert (found.checked, len(found.missing), found.truncated) == (4, 4, True)
