"""Housekeeping policy on fixed inputs: bounds, cutoffs, what counts as a problem or an orphan, batching,
and that nothing is deleted unless allowed (catalog and store faked at their boundary)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from operators.catalog.housekeeping import (
    FINISHED_JOB_STATES,
    PRUNE_RULES,
    Policy,
    Reconciliation,
    cutoff,
    dataset_problem,
    find_orphans,
    is_past_grace,
    prune_catalog,
)
from operators.storage.hook import StoredObject

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def obj(
    key: str, sha256: str = "a" * 64, size: int = 4, age: timedelta | None = timedelta(days=2)
) -> StoredObject:
    modified = NOW - age if age is not None else None
    return StoredObject("b", key, size, sha256, "etag", last_modified=modified)


@pytest.mark.parametrize(
    "knobs",
    [
        {"machine_status_days": 0},
        {"job_days": 3651},
        {"orphan_grace_hours": 0},
        {"service_days": True},
        {"selection_days": "30"},
        {"batch_size": 0},
        {"dry_run": "yes"},
    ],
)
def test_out_of_bounds_policies_are_refused(knobs: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(knobs))):
        Policy(**knobs)


def test_policy_from_params_keeps_defaults_for_what_is_not_given() -> None:
    policy = Policy.from_params({"dry_run": True, "job_days": 10, "unrelated": 1})
    assert (policy.dry_run, policy.job_days, policy.service_days, policy.delete_orphans) == (
        True,
        10,
        30,
        False,
    )


def test_cutoffs_follow_each_tables_retention() -> None:
    policy = Policy(machine_status_days=7, selection_days=30, service_days=14, job_days=90, notice_days=3)
    assert {r.table: NOW - cutoff(r, policy, NOW) for r in PRUNE_RULES} == {
        "machine_status": timedelta(days=7),
        "machine_selections": timedelta(days=30),
        "services": timedelta(days=14),
        "jobs": timedelta(days=90),
        "job_notices": timedelta(days=3),
    }


def test_only_terminal_jobs_are_finished() -> None:
    assert "COMPLETED" in FINISHED_JOB_STATES and "OUT_OF_MEMORY" in FINISHED_JOB_STATES
    assert not {"PENDING", "RUNNING", "UNKNOWN"} & set(FINISHED_JOB_STATES)


@pytest.mark.parametrize(
    ("found", "problem"),
    [
        (obj("k"), None),
        (None, "object missing"),
        (obj("k", sha256=""), "object has no recorded sha256"),
        (obj("k", sha256="b" * 64), "sha256"),
        (obj("k", size=5), "size 5 != catalog 4"),
    ],
)
def test_dataset_problem(found: StoredObject | None, problem: str | None) -> None:
    result = dataset_problem({"sha256": "a" * 64, "size": 4}, found)
    assert result == problem if problem is None else problem in str(result)


def test_grace_period() -> None:
    policy = Policy(orphan_grace_hours=24)
    assert is_past_grace(obj("k", age=timedelta(hours=25)), policy, NOW)
    assert not is_past_grace(obj("k", age=timedelta(hours=23)), policy, NOW)
    assert not is_past_grace(obj("k", age=None), policy, NOW)  # no date: never judged


class FakeCatalog:
    """Stands in for ``Catalog`` (its ``_one``/``_all`` query helpers): answers prune statements with the given deleted counts and orphan look-ups with ``known`` keys."""

    def __init__(self, deleted: list[int] | None = None, known: set[str] | None = None) -> None:
        self.deleted = list(deleted or [])
        self.known = known or set()
        self.statements: list[tuple[str, tuple[Any, ...]]] = []

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[int]:
        self.statements.append((sql, params))
        if sql.startswith("SELECT count(*)"):
            return (3,)
        return (self.deleted.pop(0) if self.deleted else 0,)

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[dict[str, Any]]:
        self.statements.append((sql, params))
        return [{"key": k} for k in params[1] if k in self.known]


def fake_catalog(**answers: Any) -> Any:
    return FakeCatalog(**answers)


def test_dry_run_prune_only_counts() -> None:
    catalog: Any = FakeCatalog()
    pruned, more_left = prune_catalog(catalog, Policy(dry_run=True), NOW)
    assert pruned == {r.table: 3 for r in PRUNE_RULES} and more_left == []
    assert all(sql.startswith("SELECT count(*)") for sql, _ in catalog.statements)


def test_prune_deletes_in_bounded_batches_and_says_what_is_left() -> None:
    # machine_status: 2 full batches then a short one; selections: every batch full (more left)
    catalog: Any = FakeCatalog(deleted=[2, 2, 1, 2, 2, 2])
    pruned, more_left = prune_catalog(catalog, Policy(batch_size=2, max_batches=3), NOW)
    assert pruned == {
        "machine_status": 5,
        "machine_selections": 6,
        "services": 0,
        "jobs": 0,
        "job_notices": 0,
    }
    assert more_left == ["machine_selections"]
    deletes = [(sql, params) for sql, params in catalog.statements if "DELETE FROM jobs" in sql]
    assert len(deletes) == 1 and "NOT EXISTS" in deletes[0][0]
    assert deletes[0][1] == (NOW - timedelta(days=90), list(FINISHED_JOB_STATES), 2)


def test_prune_refuses_a_naive_now() -> None:
    with pytest.raises(ValueError, match="timezone"):
        prune_catalog(fake_catalog(), Policy(), NOW.replace(tzinfo=None))


class FakeStore:
    bucket = "b"

    def __init__(self, objects: list[StoredObject]) -> None:
        self.objects = objects
        self.deleted: list[str] = []

    def stat_if_exists(self, key: str) -> StoredObject | None:
        raise AssertionError("not used here")

    def list_objects(self, prefix: str = "") -> list[StoredObject]:
        return [o for o in self.objects if o.key.startswith(prefix)]

    def delete(self, key: str) -> None:
        self.deleted.append(key)


OBJECTS = [
    obj("incidents/i/a"),
    obj("incidents/i/recorded"),
    obj("incidents/i/young", age=timedelta(hours=1)),
    obj("drill/r/b"),
    obj("services/s/export"),  # not a managed prefix
]


@pytest.mark.parametrize(
    ("policy", "deleted"),
    [
        (Policy(), []),
        (Policy(delete_orphans=True, dry_run=True), []),
        (Policy(delete_orphans=True), ["incidents/i/a", "drill/r/b"]),
    ],
)
def test_orphans_are_deleted_only_when_allowed(policy: Policy, deleted: list[str]) -> None:
    store = FakeStore(OBJECTS)
    found = Reconciliation()
    find_orphans(
        fake_catalog(known={"incidents/i/recorded"}), store, policy, ["incidents/", "drill/"], NOW, found
    )
    assert found.orphans == ["incidents/i/a", "drill/r/b"]
    assert (found.in_grace, found.deleted, store.deleted) == (1, len(deleted), deleted)


def test_orphan_search_is_bounded() -> None:
    store = FakeStore([obj(f"incidents/i/{n}") for n in range(5)])
    found = Reconciliation()
    find_orphans(
        fake_catalog(),
        store,
        Policy(batch_size=1, max_batches=3, delete_orphans=True),
        ["incidents/"],
        NOW,
        found,
    )
    assert (len(found.orphans), len(store.deleted), found.truncated) == (3, 3, True)


@pytest.mark.parametrize("prefix", ["", "incidents", "../x/", "/abs/"])
def test_managed_prefixes_must_be_directories(prefix: str) -> None:
    with pytest.raises(ValueError):
        find_orphans(fake_catalog(), FakeStore([]), Policy(), [prefix], NOW, Reconciliation())
