"""Submission ahead: the first member trigger of a mapped ensemble submits its siblings' first jobs.

Airflow 3.3.2's triggerer starts an ensemble's member triggers one after the other (its supervisor builds
each one's workload, a few metadata-database queries, while answering no running trigger): 50 members
take ~1.6 s, 200 ~7 s. Each member submitting its own job as its trigger starts would submit at that
pace. So the first member trigger of a (DAG run, task) in this triggerer works out the arguments of its
siblings the way theirs will (``operators.hpc.trigger_args``, with the sibling's map index) and hands
their job specs to the machine's submitter at once: the whole ensemble goes out in one batch.

What keeps this safe:
* only siblings the scheduler has deferred (their task state, asked once) and only a job's **first**
  submission (no record on the machine): every later job of a task (a retry, a resubmission) is its own
  trigger's decision;
* the sibling's own trigger still looks its job up by name (and re-attaches to it): a submission ahead
  is never trusted blindly, and two submitters at once are serialised on the machine (``submission``);
* a sibling's trigger checks that the job submitted ahead for it has its own job spec exactly; when not
  (a template reading something the leader could not know), the job is cancelled and the task fails
  clearly, so its retry submits its own. The check is this process's: a sibling whose trigger runs in
  another triggerer (several of them at once) re-attaches to the job by name, as after a restart.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from operators.catalog.catalog import Catalog, JobRecord, Producer
from operators.hpc.spec import JobSpec
from operators.hpc.submitter import get_submitter

log = logging.getLogger(__name__)

KEEP_SECONDS = 3600.0  # what a leader remembers (led ensembles, jobs not yet claimed by their trigger)


class Mismatch(RuntimeError):
    """The job submitted ahead for a task is not the job the task's own arguments describe."""


@dataclass(frozen=True)
class Sibling:
    """What the leader needs of one sibling: its job spec, its machine and catalog."""

    map_index: int
    spec: JobSpec
    machine: str
    connection: str | None
    batch_system: str
    catalog_conn_id: str | None


@dataclass
class _State:
    led: dict[tuple[str, str, str], float] = field(default_factory=dict)
    submitted: dict[tuple[str, str], tuple[str, str, float]] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    def prune(self, now: float) -> None:
        self.led = {k: t for k, t in self.led.items() if now - t < KEEP_SECONDS}
        self.submitted = {k: v for k, v in self.submitted.items() if now - v[2] < KEEP_SECONDS}


_STATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _State] = weakref.WeakKeyDictionary()


def _state() -> _State:
    return _STATES.setdefault(asyncio.get_running_loop(), _State())


def digest(spec: JobSpec) -> str:
    return hashlib.sha256(json.dumps(spec.to_dict(), sort_keys=True).encode()).hexdigest()


def deferred_siblings(ti: Any) -> list[int]:
    """Map indexes of ``ti``'s siblings the scheduler has deferred (one request for all of them)."""
    states = ti.get_task_states(dag_id=ti.dag_id, task_ids=[ti.task_id], run_ids=[ti.run_id])
    prefix = f"{ti.task_id}_"
    indexes = []
    for key, state in (states.get(ti.run_id) or {}).items():
        suffix = key[len(prefix) :] if key.startswith(prefix) else ""
        if suffix.isdigit() and int(suffix) != ti.map_index and state == "deferred":
            indexes.append(int(suffix))
    return sorted(indexes)


def start(
    ti: Any,
    siblings: Callable[[Any], list[Sibling]],
    in_thread: Callable[..., Awaitable[Any]],
) -> None:
    """Lead ``ti``'s ensemble unless a trigger of this process already does (``siblings(ti)`` works out
    the deferred siblings' jobs in a thread). Runs on its own: the leader's own job does not wait for it."""
    state = _state()
    now = time.monotonic()
    state.prune(now)
    key = (ti.dag_id, ti.run_id, ti.task_id)
    if key in state.led:
        return
    state.led[key] = now
    task = asyncio.create_task(_lead(ti, siblings, in_thread, state), name=f"urgentflow-ahead-{ti.task_id}")
    state.tasks.add(task)
    task.add_done_callback(state.tasks.discard)


async def _lead(
    ti: Any, siblings: Callable[[Any], list[Sibling]], in_thread: Callable[..., Awaitable[Any]], state: _State
) -> None:
    started = time.monotonic()
    try:
        found: list[Sibling] = await in_thread(siblings, ti)
        log.info("Worked out %d deferred siblings' jobs in %.2f s", len(found), time.monotonic() - started)
        if not found:
            return
        submitters = [get_submitter(s.connection, s.batch_system) for s in found]
        results = await asyncio.gather(
            *(submitter.submit_ahead(s.spec) for submitter, s in zip(submitters, found, strict=True)),
            return_exceptions=True,
        )
        fresh = []
        for sibling, submitter, result in zip(found, submitters, results, strict=True):
            if isinstance(result, BaseException):
                log.info("Not submitted ahead for %s: %s", sibling.spec.name, result)
            elif result is not None and not result[1]:
                state.submitted[(submitter.key, sibling.spec.name)] = (
                    result[0],
                    digest(sibling.spec),
                    time.monotonic(),
                )
                fresh.append((sibling, result[0]))
        log.info(
            "Submitted %d of %d deferred siblings' jobs ahead of their triggers in %.2f s",
            len(fresh),
            len(found),
            time.monotonic() - started,
        )
        await in_thread(_record, ti, fresh)
    except Exception:  # each sibling's own trigger submits its job then
        log.exception("Submitting ahead for %s's siblings failed", ti.task_id)


def _record(ti: Any, fresh: list[tuple[Sibling, str]]) -> None:
    """The siblings' SUBMITTED rows in one transaction per catalog; the catalog being away fails nothing."""
    by_catalog: dict[str, list[JobRecord]] = {}
    for sibling, job_id in fresh:
        if sibling.catalog_conn_id:
            producer = Producer(
                dag_id=ti.dag_id, run_id=ti.run_id, task_id=ti.task_id, map_index=sibling.map_index
            )
            record = JobRecord(sibling.machine, job_id, sibling.spec.name, "SUBMITTED", None, producer)
            by_catalog.setdefault(sibling.catalog_conn_id, []).append(record)
    for conn_id, records in by_catalog.items():
        try:
            Catalog(conn_id).record_jobs(records)
        except Exception as exc:
            log.warning("Could not record %d jobs submitted ahead in the catalog: %s", len(records), exc)


def claim(submitter_key: str, spec: JobSpec, job_id: str, reattached: bool) -> bool:
    """Whether the task re-attached (False for the job submitted ahead for it: it is that task's
    submission). Raises ``Mismatch`` when the job submitted ahead has another spec than the task's."""
    entry = _state().submitted.get((submitter_key, spec.name))
    if not reattached or entry is None or entry[0] != job_id:
        return reattached
    del _state().submitted[(submitter_key, spec.name)]
    if entry[1] != digest(spec):
        raise Mismatch(
            f"job {job_id} was submitted ahead for {spec.name} with other arguments than the task's own "
            "(a template that differs per task instance); it is cancelled: a retry submits the task's own"
        )
    return False
