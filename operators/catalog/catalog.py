"""The Postgres catalog, through ``PostgresHook`` on ``catalog_db``: idempotent writes and small queries.

Every write is safe to repeat: a retried task records the same dataset, job or state once. A write of
several rows (a dataset and its lineage, a job and its state) is one transaction: all of it or nothing.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any, ClassVar

from operators.catalog.migrations import migrate
from operators.connection_cache import cached_connection
from operators.incidents import RunRole, run_role


@dataclass(frozen=True)
class Producer:
    """Who wrote a dataset: the task instance and, for HPC outputs, the machine and job."""

    dag_id: str | None = None
    run_id: str | None = None
    task_id: str | None = None
    map_index: int = -1
    machine: str | None = None
    job_id: str | None = None

    @classmethod
    def of(cls, ti: Any, **extra: Any) -> Producer:
        """The producer for task instance ``ti`` (plus e.g. machine and job id)."""
        return cls(
            dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=task_map_index(ti), **extra
        )


@dataclass(frozen=True)
class JobRecord:
    """One batch job's state, as ``Catalog.record_jobs`` keeps it."""

    machine: str
    native_id: str
    name: str
    state: str
    exit_code: int | None = None
    producer: Producer | None = None


def task_map_index(ti: Any) -> int:
    """A task instance's map index; -1 when the task is not mapped (Airflow says None or -1)."""
    index = getattr(ti, "map_index", None)
    return -1 if index is None else int(index)


class Catalog:
    # connection ids whose schema this process has brought up to date
    _current: ClassVar[set[str]] = set()

    def __init__(self, conn_id: str = "catalog_db", statement_timeout_ms: int | None = None) -> None:
        """``statement_timeout_ms``: every statement (and lock wait, migrations' included) of this
        catalog gives up after that long: for callers that must not hang on a stalled database."""
        self.conn_id = conn_id
        self.statement_timeout_ms = statement_timeout_ms

    def ensure_schema(self) -> None:
        """Apply pending migrations once per process (writes call it; it is one query when current)."""
        if self.conn_id not in self._current:
            self.migrate()
            self._current.add(self.conn_id)

    @cached_property
    def hook(self) -> Any:
        from airflow.providers.postgres.hooks.postgres import PostgresHook

        ms = self.statement_timeout_ms
        options = f"-c statement_timeout={ms} -c lock_timeout={ms}" if ms else None
        return PostgresHook(
            postgres_conn_id=self.conn_id, options=options, connection=cached_connection(self.conn_id)
        )

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor whose statements are committed together when the block ends, and none when it raises."""
        self.ensure_schema()
        with self.hook.get_conn() as conn, conn.cursor() as cur:
            yield cur
            conn.commit()

    def _one(self, sql: str, params: Sequence[Any]) -> Any:
        with self._transaction() as cur:
            cur.execute(sql, params)
            return cur.fetchone()

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
        self.ensure_schema()
        with self.hook.get_conn() as conn, conn.cursor() as cur:
            cur.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def migrate(self) -> list[int]:
        conn = self.hook.get_conn()
        try:
            return migrate(conn)
        finally:
            conn.close()

    def record_dataset(
        self,
        *,
        bucket: str,
        key: str,
        sha256: str,
        size: int,
        content_type: str = "application/octet-stream",
        producer: Producer | None = None,
        incident_id: str | None = None,
        inputs: Sequence[int] = (),
    ) -> int:
        """The dataset's id; the same (bucket, key, sha256) recorded twice is one row."""
        p = producer or Producer()
        with self._transaction() as cur:
            cur.execute(
                "INSERT INTO datasets (bucket, key, sha256, size, content_type, incident_id,"
                " dag_id, run_id, task_id, map_index, machine, job_id)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
                " ON CONFLICT (bucket, key, sha256) DO UPDATE SET size = EXCLUDED.size"
                " RETURNING id",
                (
                    bucket,
                    key,
                    sha256,
                    size,
                    content_type,
                    incident_id,
                    p.dag_id,
                    p.run_id,
                    p.task_id,
                    p.map_index,
                    p.machine,
                    p.job_id,
                ),
            )
            dataset_id = int(cur.fetchone()[0])
            cur.executemany(
                "INSERT INTO lineage (input_id, output_id) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                [(input_id, dataset_id) for input_id in inputs],
            )
        return dataset_id

    def record_job(
        self,
        *,
        machine: str,
        native_id: str,
        name: str,
        state: str,
        exit_code: int | None = None,
        producer: Producer | None = None,
    ) -> int:
        """Upsert a job by (machine, native id) and add ``state`` to its history (once per state)."""
        [job_id] = self.record_jobs([JobRecord(machine, native_id, name, state, exit_code, producer)])
        return job_id

    def record_jobs(self, jobs: Sequence[JobRecord]) -> list[int]:
        """``record_job`` for many jobs in one transaction (an ensemble submitted together)."""
        ids = []
        with self._transaction() as cur:
            for job in jobs:
                p = job.producer or Producer()
                cur.execute(
                    "INSERT INTO jobs (machine, native_id, name, dag_id, run_id, task_id, map_index, state,"
                    " exit_code) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
                    # SUBMITTED is a job's first state; recorded late (a job submitted ahead is recorded
                    # after its batch, maybe after its own trigger recorded its end) it only adds history.
                    " ON CONFLICT (machine, native_id) DO UPDATE SET"
                    " state = CASE WHEN EXCLUDED.state = 'SUBMITTED' THEN jobs.state ELSE EXCLUDED.state END,"
                    " exit_code = CASE WHEN EXCLUDED.state = 'SUBMITTED' THEN jobs.exit_code"
                    " ELSE EXCLUDED.exit_code END, updated_at = now()"
                    " RETURNING id",
                    (job.machine, job.native_id, job.name, p.dag_id, p.run_id, p.task_id, p.map_index,
                     job.state, job.exit_code),
                )  # fmt: skip
                ids.append(int(cur.fetchone()[0]))
                cur.execute(
                    "INSERT INTO job_states (job_id, state, exit_code) VALUES (%s, %s, %s) ON CONFLICT DO NOTHING",
                    (ids[-1], job.state, job.exit_code),
                )
        return ids

    def datasets_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT id, bucket, key, sha256, size, task_id, map_index, machine, job_id FROM datasets"
            " WHERE dag_id = %s AND run_id = %s ORDER BY id",
            (dag_id, run_id),
        )

    def record_stored(
        self,
        stored: Any,
        producer: Producer,
        incident_id: str | None = None,
        inputs: Sequence[int] = (),
    ) -> int:
        """``record_dataset`` for an object the store just wrote (an ``ObjectStoreHook`` StoredObject)."""
        return self.record_dataset(
            bucket=stored.bucket,
            key=stored.key,
            sha256=stored.sha256,
            size=stored.size,
            content_type=stored.content_type,
            producer=producer,
            incident_id=incident_id,
            inputs=inputs,
        )

    def dataset(self, dataset_id: int) -> dict[str, Any] | None:
        rows = self._all(
            "SELECT id, bucket, key, sha256, size, content_type, incident_id, dag_id, run_id, task_id,"
            " map_index, machine, job_id, created_at FROM datasets WHERE id = %s",
            (dataset_id,),
        )
        return rows[0] if rows else None

    def inputs_of(self, dataset_id: int) -> list[int]:
        rows = self._all("SELECT input_id FROM lineage WHERE output_id = %s ORDER BY input_id", (dataset_id,))
        return [r["input_id"] for r in rows]

    def job_history(self, machine: str, native_id: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT s.state, s.exit_code, s.at FROM job_states s JOIN jobs j ON j.id = s.job_id"
            " WHERE j.machine = %s AND j.native_id = %s ORDER BY s.at, s.state",
            (machine, native_id),
        )

    def record_machine_status(
        self, machine: str, state: str, detail: dict[str, Any], latency_ms: float | None, error: str
    ) -> None:
        self._one(
            "INSERT INTO machine_status (machine, state, detail, latency_ms, error)"
            " VALUES (%s, %s, %s, %s, %s) RETURNING 1",
            (machine, state, json.dumps(detail), latency_ms, error),
        )

    def latest_machine_status(self, max_age_seconds: float | None = None) -> dict[str, dict[str, Any]]:
        """Each machine's newest status row (only rows younger than ``max_age_seconds`` if given)."""
        rows = self._all(
            "SELECT DISTINCT ON (machine) machine, observed_at, state, detail, latency_ms, error,"
            " EXTRACT(EPOCH FROM now() - observed_at)::float8 AS age_seconds FROM machine_status"
            " WHERE observed_at > now() - make_interval(secs => %s::float8)"
            " ORDER BY machine, observed_at DESC",
            (float(max_age_seconds) if max_age_seconds is not None else 1e9,),
        )
        return {r["machine"]: r for r in rows}

    def record_selection(
        self, producer: Producer, request: dict[str, Any], candidates: list[dict[str, Any]], chosen: Any
    ) -> int:
        row = self._one(
            "INSERT INTO machine_selections (dag_id, run_id, task_id, map_index, request, candidates, chosen)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (dag_id, run_id, task_id, map_index) DO UPDATE SET request = EXCLUDED.request,"
            " candidates = EXCLUDED.candidates, chosen = EXCLUDED.chosen, created_at = now() RETURNING id",
            (
                producer.dag_id,
                producer.run_id,
                producer.task_id,
                producer.map_index,
                json.dumps(request),
                json.dumps(candidates),
                json.dumps(chosen),
            ),
        )
        return int(row[0])

    def selections_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT task_id, map_index, request, candidates, chosen, created_at FROM machine_selections"
            " WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
            (dag_id, run_id),
        )

    def unfinished_jobs(self, min_age_seconds: float, limit: int = 1000) -> list[dict[str, Any]]:
        """Our jobs not known to have ended, last updated at least ``min_age_seconds`` ago."""
        return self._all(
            "SELECT machine, native_id, name, dag_id, run_id, task_id, map_index, state FROM jobs"
            " WHERE state IN ('SUBMITTED', 'REATTACHED', 'PENDING', 'RUNNING', 'UNKNOWN')"
            " AND updated_at < now() - make_interval(secs => %s::float8) ORDER BY updated_at LIMIT %s",
            (min_age_seconds, limit),
        )

    def jobs_on(self, machine: str, limit: int = 50) -> list[dict[str, Any]]:
        """Our newest jobs on ``machine``: what the machine page shows."""
        return self._all(
            "SELECT native_id, name, dag_id, run_id, task_id, map_index, state, exit_code, updated_at"
            " FROM jobs WHERE machine = %s ORDER BY updated_at DESC LIMIT %s",
            (machine, limit),
        )

    _SERVICE_COLUMNS = (
        "id, dag_id, run_id, task_id, url, container_id, state, expires_at, owner, image, last_seen,"
        " created_at, updated_at"
    )

    def record_service(
        self,
        *,
        service_id: str,
        dag_id: str,
        run_id: str,
        task_id: str,
        url: str | None,
        container_id: str,
        state: str,
        expires_at: Any,
        owner: str | None = None,
        image: str | None = None,
    ) -> None:
        """Upsert a service container by its (deterministic) id; recording it counts as a sign of life."""
        self._one(
            "INSERT INTO services (id, dag_id, run_id, task_id, url, container_id, state, expires_at,"
            " owner, image) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (id) DO UPDATE SET url = EXCLUDED.url, container_id = EXCLUDED.container_id,"
            " state = EXCLUDED.state, expires_at = EXCLUDED.expires_at, owner = EXCLUDED.owner,"
            " image = EXCLUDED.image, last_seen = now(), updated_at = now() RETURNING 1",
            (service_id, dag_id, run_id, task_id, url, container_id, state, expires_at, owner, image),
        )

    def set_service_state(self, service_id: str, state: str) -> bool:
        """False when no such service was recorded."""
        row = self._one(
            "UPDATE services SET state = %s, updated_at = now() WHERE id = %s RETURNING 1",
            (state, service_id),
        )
        return row is not None

    def touch_service(self, service_id: str) -> bool:
        """Keep-alive: the service's user is still there (False when no such service was recorded)."""
        row = self._one("UPDATE services SET last_seen = now() WHERE id = %s RETURNING 1", (service_id,))
        return row is not None

    def service(self, service_id: str) -> dict[str, Any] | None:
        # the column list is a constant of this class; values are bound parameters
        rows = self._all(f"SELECT {self._SERVICE_COLUMNS} FROM services WHERE id = %s", (service_id,))  # noqa: S608
        return rows[0] if rows else None

    def recent_services(self, limit: int = 100) -> list[dict[str, Any]]:
        """Newest first: what the Services page and ``GET /services`` show."""
        return self._all(
            f"SELECT {self._SERVICE_COLUMNS} FROM services ORDER BY created_at DESC, id LIMIT %s",  # noqa: S608
            (limit,),
        )

    def services_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._all(
            f"SELECT {self._SERVICE_COLUMNS} FROM services WHERE dag_id = %s AND run_id = %s"  # noqa: S608
            " ORDER BY created_at, id",
            (dag_id, run_id),
        )

    def create_incident(self, incident_id: str, kind: str, payload: dict[str, Any]) -> None:
        """A new incident; raises if the id exists (ids are generated, so that is a bug, not a retry)."""
        self._one(
            "INSERT INTO incidents (id, kind, payload) VALUES (%s, %s, %s) RETURNING id",
            (incident_id, kind, json.dumps(payload)),
        )

    def delete_incident(self, incident_id: str) -> None:
        """Undo ``create_incident`` when its DAG run could not be created (both or neither)."""
        self._one("DELETE FROM incidents WHERE id = %s RETURNING id", (incident_id,))

    def set_incident_status(self, incident_id: str, status: str) -> None:
        """``cancelled`` is final: a run failing after the cancel does not turn it into ``failed``."""
        self._one(
            "UPDATE incidents SET status = %s, updated_at = now() WHERE id = %s AND status <> 'cancelled'"
            " RETURNING id",
            (status, incident_id),
        )

    def update_incident(self, incident_id: str, change: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``change`` into the incident's payload (top-level keys replaced, e.g. ``weather`` from an
        observation); returns the new payload, None when there is no such incident."""
        rows = self._all(
            "UPDATE incidents SET payload = payload || %s::jsonb, updated_at = now() WHERE id = %s"
            " RETURNING payload",
            (json.dumps(change), incident_id),
        )
        return rows[0]["payload"] if rows else None

    def record_rejected_observation(
        self,
        *,
        dag_id: str,
        run_id: str,
        event_index: int,
        incident_id: str | None,
        observation_id: str | None,
        key: str | None,
        reason: str,
    ) -> None:
        """An observation event that run (dag_id, run_id) rejected (its ``event_index``-th): once per event."""
        self._one(
            "INSERT INTO rejected_observations (dag_id, run_id, event_index, incident_id, observation_id,"
            " key, reason) VALUES (%s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (dag_id, run_id, event_index) DO UPDATE SET reason = EXCLUDED.reason RETURNING 1",
            (dag_id, run_id, event_index, incident_id, observation_id, key, reason),
        )

    def rejected_observations(self, incident_id: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT dag_id, run_id, event_index, observation_id, key, reason, created_at"
            " FROM rejected_observations WHERE incident_id = %s ORDER BY created_at, event_index",
            (incident_id,),
        )

    def delete_dataset(self, dataset_id: int) -> None:
        """Undo ``record_dataset`` for an upload that was not accepted after all (both or neither)."""
        self._one("DELETE FROM datasets WHERE id = %s RETURNING id", (dataset_id,))

    def datasets_of_incident(self, incident_id: str, key_prefix: str = "") -> list[dict[str, Any]]:
        return self._all(
            "SELECT id, key, sha256, size, content_type, dag_id, run_id, task_id, created_at FROM datasets"
            " WHERE incident_id = %s AND starts_with(key, %s) ORDER BY id",
            (incident_id, key_prefix),
        )

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        rows = self._all(
            "SELECT id, kind, status, payload, created_at, updated_at FROM incidents WHERE id = %s",
            (incident_id,),
        )
        return rows[0] if rows else None

    def incidents(self, limit: int = 100) -> list[dict[str, Any]]:
        return self._all(
            "SELECT id, kind, status, payload, created_at, updated_at FROM incidents"
            " ORDER BY created_at DESC LIMIT %s",
            (limit,),
        )

    def record_incident_run(
        self,
        incident_id: str,
        dag_id: str,
        run_id: str,
        state: str,
        reason: str = "",
        started_at: Any = None,
        ended_at: Any = None,
    ) -> RunRole | None:
        """Upsert one run's state on its incident (the exit handler calls it at every state change;
        idempotent) and return the run's role there (``run_role``). Nothing is recorded, and None returned,
        when the incident does not exist, when ``dag_id`` is neither the incident kind's own DAG nor the
        ingest DAG, or when the run is recorded on another incident already."""
        incident = self.incident(incident_id)
        role = run_role(incident["kind"], dag_id) if incident else None
        if role is None:
            return None
        row = self._one(
            "INSERT INTO incident_runs"
            " (incident_id, dag_id, run_id, role, state, reason, started_at, ended_at)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
            " ON CONFLICT (dag_id, run_id) DO UPDATE SET state = EXCLUDED.state,"
            " reason = COALESCE(NULLIF(EXCLUDED.reason, ''), incident_runs.reason),"
            " started_at = COALESCE(incident_runs.started_at, EXCLUDED.started_at),"
            " ended_at = COALESCE(EXCLUDED.ended_at, incident_runs.ended_at), updated_at = now()"
            " WHERE incident_runs.incident_id = EXCLUDED.incident_id"
            " RETURNING role",
            (incident_id, dag_id, run_id, role, state, reason, started_at, ended_at),
        )
        return role if row else None

    def incident_of_run(self, dag_id: str, run_id: str) -> str | None:
        rows = self._all(
            "SELECT incident_id FROM incident_runs WHERE dag_id = %s AND run_id = %s", (dag_id, run_id)
        )
        return rows[0]["incident_id"] if rows else None

    def runs_of_incident(self, incident_id: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT dag_id, run_id, role, state, reason, started_at, ended_at, updated_at FROM incident_runs"
            " WHERE incident_id = %s ORDER BY updated_at",
            (incident_id,),
        )

    def jobs_of_run(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return self._all(
            "SELECT machine, native_id, name, task_id, map_index, state, exit_code, updated_at FROM jobs"
            " WHERE dag_id = %s AND run_id = %s ORDER BY task_id, map_index",
            (dag_id, run_id),
        )
