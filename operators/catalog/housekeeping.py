"""Catalog housekeeping: retention for the catalog's operational tables, and the catalog reconciled
with the object store.

What goes and what stays (the ``catalog_housekeeping`` DAG's doc says the same for operators):

- pruned when older than their retention: ``machine_status`` rows, ``machine_selections``, ``services``
  rows in a final state (``stopped``, ``failed``, ``reaped:<reason>``; live or unknown states stay),
  and ``jobs`` in a terminal state that no dataset names as its producer (their ``job_states`` go
  with them, ``ON DELETE CASCADE``), and ``job_notices`` (a notice's nonce is refused a second time while
  its row is kept; replayed later it makes a poller look once more, nothing else);
- never pruned: incidents, incident runs, datasets and lineage (provenance);
- datasets whose object is missing, or whose object's recorded sha256 or size differs from the row,
  are **reported**, never deleted;
- objects under the managed prefixes with no dataset row and older than the grace period (a task
  may be between its upload and its catalog insert) are orphans of crashed tasks: reported, and
  deleted only with ``delete_orphans``;
- ``dry_run`` changes nothing and reports what would go. Every category is handled in bounded
  batches; what is left over is done by the next run.

``now`` and the prefixes are arguments, so a test can scope a run to what it created.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from operators.hpc.states import JobState
from operators.storage.keys import check_prefix

if TYPE_CHECKING:
    from operators.catalog.catalog import Catalog
    from operators.storage.hook import StoredObject

log = logging.getLogger(__name__)

# Object-store prefixes whose every object our code catalogues (wildfire_forecast inputs and results,
# incident observations, hpc_drill). Service exports (services/) are not catalogued: never orphans.
MANAGED_PREFIXES = ("incidents/", "drill/")
FINISHED_JOB_STATES = tuple(sorted(s.value for s in JobState if s.terminal))
FINAL_SERVICE_STATES = ("stopped", "failed")  # and reaped:<reason>
REPORT_LIMIT = 100  # reported items kept in the summary (the counts are always complete)

# Retention knobs and their bounds: the DAG's params use them as JSON-schema bounds.
RETENTION_BOUNDS: dict[str, tuple[int, int]] = {
    "machine_status_days": (1, 365),
    "selection_days": (1, 3650),
    "service_days": (1, 3650),
    "job_days": (1, 3650),
    "notice_days": (1, 365),
    "orphan_grace_hours": (1, 720),
}


@dataclass(frozen=True)
class Policy:
    machine_status_days: int = 7
    selection_days: int = 30
    service_days: int = 30
    job_days: int = 90
    notice_days: int = 7
    orphan_grace_hours: int = 24
    delete_orphans: bool = False
    dry_run: bool = False
    batch_size: int = 500
    max_batches: int = 200  # per category and run: at most batch_size * max_batches rows or objects

    def __post_init__(self) -> None:
        for name, (low, high) in {
            **RETENTION_BOUNDS,
            "batch_size": (1, 10_000),
            "max_batches": (1, 10_000),
        }.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
        for name in ("delete_orphans", "dry_run"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be a boolean, got {getattr(self, name)!r}")

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> Policy:
        """The policy from a DAG run's params (knobs not given keep their defaults)."""
        return cls(**{f.name: params[f.name] for f in fields(cls) if f.name in params})

    @property
    def limit(self) -> int:
        return self.batch_size * self.max_batches


@dataclass(frozen=True)
class PruneRule:
    """Rows of ``table`` whose ``timestamp`` is older than the ``retention`` policy knob (in days) and
    that meet ``condition``; ``row_id`` names a row for the batched delete."""

    table: str
    row_id: str
    timestamp: str
    retention: str
    condition: str = "TRUE"
    params: tuple[Any, ...] = ()

    def where(self, cutoff: datetime) -> tuple[str, tuple[Any, ...]]:
        return f"{self.timestamp} < %s AND {self.condition}", (cutoff, *self.params)


# Table and column names are constants of this module; every value is a bound parameter.
PRUNE_RULES = (
    PruneRule("machine_status", "ctid", "observed_at", "machine_status_days"),
    PruneRule("machine_selections", "id", "created_at", "selection_days"),
    PruneRule(
        "services",
        "id",
        "updated_at",
        "service_days",
        "(state = ANY(%s) OR starts_with(state, 'reaped:'))",
        (list(FINAL_SERVICE_STATES),),
    ),
    PruneRule(
        "jobs",
        "id",
        "updated_at",
        "job_days",
        "state = ANY(%s) AND NOT EXISTS"
        " (SELECT 1 FROM datasets d WHERE d.machine = jobs.machine AND d.job_id = jobs.native_id)",
        (list(FINISHED_JOB_STATES),),
    ),
    PruneRule("job_notices", "ctid", "received_at", "notice_days"),
)


def cutoff(rule: PruneRule, policy: Policy, now: datetime) -> datetime:
    return now - timedelta(days=getattr(policy, rule.retention))


def _check_now(now: datetime) -> datetime:
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now


def prune_catalog(catalog: Catalog, policy: Policy, now: datetime) -> tuple[dict[str, int], list[str]]:
    """Rows pruned per table (would be pruned, with ``dry_run``) and the tables with more left over."""
    _check_now(now)
    pruned: dict[str, int] = {}
    more_left = []
    for rule in PRUNE_RULES:
        where, params = rule.where(cutoff(rule, policy, now))
        if policy.dry_run:
            row = catalog._one(f"SELECT count(*) FROM {rule.table} WHERE {where}", params)  # noqa: S608
            pruned[rule.table] = int(row[0])
            continue
        total = 0
        for _ in range(policy.max_batches):
            row = catalog._one(
                f"WITH gone AS (DELETE FROM {rule.table} WHERE {rule.row_id} = ANY(ARRAY("  # noqa: S608
                f"SELECT {rule.row_id} FROM {rule.table} WHERE {where} LIMIT %s)) RETURNING 1)"
                " SELECT count(*) FROM gone",
                (*params, policy.batch_size),
            )
            total += int(row[0])
            if int(row[0]) < policy.batch_size:
                break
        else:
            more_left.append(rule.table)
        pruned[rule.table] = total
    return pruned, more_left


class ObjectStore(Protocol):
    """What housekeeping needs of ``ObjectStoreHook``."""

    @property
    def bucket(self) -> str: ...
    def stat_if_exists(self, key: str) -> StoredObject | None: ...
    def list_objects(self, prefix: str = "") -> list[StoredObject]: ...
    def delete(self, key: str) -> None: ...


@dataclass
class Reconciliation:
    checked: int = 0
    missing: list[dict[str, Any]] = field(default_factory=list)
    changed: list[dict[str, Any]] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    in_grace: int = 0
    deleted: int = 0
    truncated: bool = False


def dataset_problem(row: Mapping[str, Any], found: StoredObject | None) -> str | None:
    """Why a dataset row and its object disagree, or None when they agree."""
    if found is None:
        return "object missing"
    if not found.sha256:
        return "object has no recorded sha256"
    if found.sha256 != row["sha256"]:
        return f"object sha256 {found.sha256} != catalog {row['sha256']}"
    if found.size != row["size"]:
        return f"object size {found.size} != catalog {row['size']}"
    return None


def is_past_grace(obj: StoredObject, policy: Policy, now: datetime) -> bool:
    """An object old enough to be judged (no date: not judged)."""
    grace = timedelta(hours=policy.orphan_grace_hours)
    return obj.last_modified is not None and obj.last_modified < now - grace


def _managed(prefixes: Sequence[str]) -> list[str]:
    """Prefixes to reconcile: non-empty directory prefixes only (an empty one would be everything)."""
    for prefix in prefixes:
        if not prefix.endswith("/"):
            raise ValueError(f"a managed prefix must end with '/': {prefix!r}")
        check_prefix(prefix)
    return list(prefixes)


def _datasets_under(catalog: Catalog, bucket: str, prefix: str, policy: Policy) -> Iterator[dict[str, Any]]:
    """Dataset rows under ``prefix`` in keyset batches (one batch past ``policy.limit``: the caller
    stops at the limit and so knows when rows were left over)."""
    after = 0
    for _ in range(policy.max_batches + 1):
        rows = catalog._all(
            "SELECT id, key, sha256, size FROM datasets WHERE bucket = %s AND starts_with(key, %s)"
            " AND id > %s ORDER BY id LIMIT %s",
            (bucket, prefix, after, policy.batch_size),
        )
        yield from rows
        if len(rows) < policy.batch_size:
            return
        after = rows[-1]["id"]


def check_datasets(
    catalog: Catalog, store: ObjectStore, policy: Policy, prefixes: Sequence[str], into: Reconciliation
) -> None:
    """Every dataset row under the prefixes against its object (one HEAD each): report disagreements."""
    for prefix in _managed(prefixes):
        for row in _datasets_under(catalog, store.bucket, prefix, policy):
            if into.checked >= policy.limit:
                into.truncated = True
                return
            into.checked += 1
            problem = dataset_problem(row, store.stat_if_exists(row["key"]))
            if problem is not None:
                kind = into.missing if problem == "object missing" else into.changed
                kind.append({"dataset_id": row["id"], "key": row["key"], "problem": problem})
                log.warning("Dataset %s (%s): %s", row["id"], row["key"], problem)


def _batches(items: Sequence[StoredObject], size: int) -> Iterator[Sequence[StoredObject]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def find_orphans(
    catalog: Catalog,
    store: ObjectStore,
    policy: Policy,
    prefixes: Sequence[str],
    now: datetime,
    into: Reconciliation,
) -> None:
    """Objects under the prefixes, past the grace period, that no dataset row names; deleted only with
    ``delete_orphans`` and without ``dry_run``."""
    _check_now(now)
    delete = policy.delete_orphans and not policy.dry_run
    for prefix in _managed(prefixes):
        listed = store.list_objects(prefix)
        judged = [o for o in listed if is_past_grace(o, policy, now)]
        into.in_grace += len(listed) - len(judged)
        for batch in _batches(judged, policy.batch_size):
            known = {
                r["key"]
                for r in catalog._all(
                    "SELECT DISTINCT key FROM datasets WHERE bucket = %s AND key = ANY(%s)",
                    (store.bucket, [o.key for o in batch]),
                )
            }
            for obj in batch:
                if obj.key in known:
                    continue
                if len(into.orphans) >= policy.limit:
                    into.truncated = True
                    return
                into.orphans.append(obj.key)
                if delete:
                    store.delete(obj.key)
                    into.deleted += 1
                log.warning(
                    "Orphan object %s (%s)%s", obj.key, obj.last_modified, " deleted" if delete else ""
                )


def housekeep(
    catalog: Catalog,
    store: ObjectStore,
    policy: Policy,
    now: datetime,
    prefixes: Sequence[str] = MANAGED_PREFIXES,
) -> dict[str, Any]:
    """Prune, reconcile, and return (and log) the summary: counts per category, reported items."""
    pruned, more_left = prune_catalog(catalog, policy, now)
    found = Reconciliation()
    check_datasets(catalog, store, policy, prefixes, found)
    find_orphans(catalog, store, policy, prefixes, now, found)
    summary = summarize(policy, now, prefixes, pruned, more_left, found)
    log.info("Housekeeping%s: %s", " (dry run)" if policy.dry_run else "", summary["counts"])
    return summary


def summarize(
    policy: Policy,
    now: datetime,
    prefixes: Sequence[str],
    pruned: Mapping[str, int],
    more_left: Sequence[str],
    found: Reconciliation,
) -> dict[str, Any]:
    """JSON-ready: ``counts`` complete, ``reported`` items capped at ``REPORT_LIMIT`` each."""
    return {
        "dry_run": policy.dry_run,
        "delete_orphans": policy.delete_orphans,
        "now": now.isoformat(),
        "prefixes": list(prefixes),
        "counts": {
            **{f"pruned_{table}": n for table, n in pruned.items()},
            "datasets_checked": found.checked,
            "datasets_missing": len(found.missing),
            "datasets_changed": len(found.changed),
            "orphans": len(found.orphans),
            "orphans_deleted": found.deleted,
            "objects_in_grace": found.in_grace,
        },
        "more_left": [*more_left, *(["reconciliation"] if found.truncated else [])],
        "reported": {
            "missing": found.missing[:REPORT_LIMIT],
            "changed": found.changed[:REPORT_LIMIT],
            "orphans": found.orphans[:REPORT_LIMIT],
        },
    }
