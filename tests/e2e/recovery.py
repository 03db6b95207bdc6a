"""Measuring recovery after a component crash: how long until an ensemble's members move again."""

from __future__ import annotations

import time

import pytest
from airflow_client import AirflowClient

# A member "moves" when it is watched by the triggerer (deferred) or done; anything else after a crash
# (running in a dead process, queued by a dead scheduler, waiting for its retry) is a member stuck.
MOVING = frozenset({"deferred", "success"})


def member_states(client: AirflowClient, dag_id: str, run_id: str, task_id: str) -> dict[int, str]:
    return {
        t["map_index"]: str(t["state"])
        for t in client.task_instances(dag_id, run_id)
        if t["task_id"] == task_id
    }


def wait_until_submitting(
    client: AirflowClient, dag_id: str, run_id: str, task_id: str, members: int, timeout: float = 180
) -> dict[int, str]:
    """Wait (bounded) until a member is running in a worker (submitting) while others are not yet
    deferred: the moment to crash a component."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = member_states(client, dag_id, run_id, task_id)
        if len(states) == members and "running" in states.values() and not set(states.values()) <= MOVING:
            return states
        time.sleep(0.2)
    pytest.fail(f"no member of {run_id} was being submitted within {timeout} s")


def seconds_until_moving(
    client: AirflowClient, dag_id: str, run_id: str, task_id: str, since: float, timeout: float = 300
) -> float:
    """Seconds from ``since`` (time.monotonic) until every member is deferred or succeeded."""
    deadline = time.monotonic() + timeout
    states: dict[int, str] = {}
    while time.monotonic() < deadline:
        states = member_states(client, dag_id, run_id, task_id)
        if states and set(states.values()) <= MOVING:
            return time.monotonic() - since
        time.sleep(1)
    pytest.fail(f"members of {run_id} still not moving {timeout} s after the restart: {states}")
