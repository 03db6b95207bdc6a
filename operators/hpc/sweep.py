"""Orphaned batch jobs: a job whose task instance no longer runs, waits or will retry is cancelled.

A deferred member marked failed (or its run failed) before a triggerer started its trigger has no
``on_kill`` to cancel its job; a run deleted from Airflow neither. The sweep reads our unfinished jobs
from the catalog, asks Airflow the state of each one's task instance, and for those whose task instance
is gone or ended asks the machine (one status command per machine): a job still queued or running is
cancelled, marked judged (a later clear of the task submits afresh instead of re-attaching to it) and
recorded ``CANCELLED``; a job that ended meanwhile gets its real end state recorded.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from operators.catalog.catalog import Catalog, Producer
from operators.hpc.adapters import JobRef
from operators.hpc.hook import BatchHook, job_workdir
from operators.hpc.spec import exit_file

log = logging.getLogger(__name__)

# A task instance in one of these states still owns its job: it watches it, or will (again: a retry or
# a cleared task re-attaches to the job its earlier try submitted).
OWNING_TI_STATES = frozenset(
    {None, "scheduled", "queued", "running", "deferred", "up_for_retry", "up_for_reschedule", "restarting"}
)
# Airflow's answer: {run_id: {task_id or f"{task_id}_{map_index}": state}} for the given runs of a DAG.
TaskStates = Callable[[str, list[str]], Mapping[str, Mapping[str, str | None]]]


def ti_key(task_id: str, map_index: int) -> str:
    return task_id if map_index < 0 else f"{task_id}_{map_index}"


def orphans(jobs: Iterable[Mapping[str, Any]], task_states: TaskStates) -> list[dict[str, Any]]:
    """The jobs whose task instance no longer owns them, each with ``ti_state`` (``"gone"`` when Airflow
    knows no such run or task instance). Jobs without a producer (not ours to judge) are kept."""
    by_dag: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for job in jobs:
        if job.get("dag_id") and job.get("run_id") and job.get("task_id"):
            by_dag[str(job["dag_id"])].append(job)
    found = []
    for dag_id, rows in by_dag.items():
        states = task_states(dag_id, sorted({str(r["run_id"]) for r in rows}))
        for row in rows:
            run = states.get(str(row["run_id"]))
            key = ti_key(str(row["task_id"]), int(row["map_index"]))
            state = run.get(key, "gone") if run is not None else "gone"
            if state not in OWNING_TI_STATES:
                found.append({**row, "ti_state": state})
    return found


def sweep(
    catalog: Catalog,
    task_states: TaskStates,
    hook_of: Callable[[str], BatchHook] = BatchHook,
    min_age_seconds: float = 120.0,
) -> list[dict[str, Any]]:
    """Cancel and record the orphans among our unfinished jobs older than ``min_age_seconds`` (younger
    ones may still be between submission and deferral); what was done, one dict per orphan."""
    done = []
    by_machine: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in orphans(catalog.unfinished_jobs(min_age_seconds), task_states):
        by_machine[str(row["machine"])].append(row)
    for machine, rows in by_machine.items():
        try:
            hook = hook_of(machine)
            refs = {r["native_id"]: _ref(hook, r) for r in rows}
            statuses = hook.status(list(refs.values()))
            live = [i for i in refs if not statuses[i].state.terminal]
            if live:
                hook.cancel(live)
        except Exception as exc:  # one machine away must not stop the sweep of the others
            log.warning("Orphan sweep on %s failed: %s", machine, exc)
            continue
        for row in rows:
            job_id = row["native_id"]
            state = "CANCELLED" if job_id in live else statuses[job_id].state.value
            if job_id in live:
                hook.mark_judged(_workdir(hook, row), row["name"], job_id)
            catalog.record_job(
                machine=machine,
                native_id=job_id,
                name=row["name"],
                state=state,
                exit_code=None if job_id in live else statuses[job_id].exit_code,
                producer=Producer(
                    dag_id=row["dag_id"],
                    run_id=row["run_id"],
                    task_id=row["task_id"],
                    map_index=row["map_index"],
                ),
            )
            log.warning(
                "Orphaned job %s (%s) on %s: its task instance is %s; job recorded %s",
                job_id,
                row["name"],
                machine,
                row["ti_state"],
                state,
            )
            done.append(
                {"machine": machine, "job_id": job_id, "ti_state": row["ti_state"], "recorded": state}
            )
    return done


def _workdir(hook: BatchHook, row: Mapping[str, Any]) -> str:
    return job_workdir(hook.machine.workdir, row["dag_id"], row["run_id"], row["task_id"], row["map_index"])


def _ref(hook: BatchHook, row: Mapping[str, Any]) -> JobRef:
    return JobRef(str(row["native_id"]), exit_file(_workdir(hook, row), row["name"]), row["name"])
