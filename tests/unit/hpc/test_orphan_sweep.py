"""Which batch jobs the orphan sweep takes: those whose task instance no longer owns them."""

from __future__ import annotations

from typing import Any

import pytest

from operators.hpc.sweep import OWNING_TI_STATES, orphans


def job(run_id: str, map_index: int, task_id: str = "member", dag_id: str = "d") -> dict[str, Any]:
    return {
        "machine": "alpha",
        "native_id": f"{run_id}-{map_index}",
        "name": "n",
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "map_index": map_index,
    }


def test_states_that_own_a_job_keep_it_and_ended_or_missing_ones_lose_it() -> None:
    asked: list[tuple[str, list[str]]] = []

    def task_states(dag_id: str, run_ids: list[str]) -> dict[str, dict[str, str | None]]:
        asked.append((dag_id, run_ids))
        return {
            "r1": {
                "member_0": "deferred",
                "member_1": "failed",
                "member_2": None,
                "member_3": "up_for_retry",
            },
            "r2": {"single": "success"},
        }

    jobs = [job("r1", 0), job("r1", 1), job("r1", 2), job("r1", 3), job("r1", 4), job("r2", -1, "single")]
    jobs.append(job("gone-run", 0))
    found = {(j["run_id"], j["map_index"]): j["ti_state"] for j in orphans(jobs, task_states)}
    assert found == {("r1", 1): "failed", ("r1", 4): "gone", ("r2", -1): "success", ("gone-run", 0): "gone"}
    assert asked == [("d", ["gone-run", "r1", "r2"])], "one question per DAG"


@pytest.mark.parametrize("state", [*sorted(s for s in OWNING_TI_STATES if s), None])
def test_every_owning_state_keeps_the_job(state: str | None) -> None:
    assert orphans([job("r", 0)], lambda dag_id, run_ids: {"r": {"member_0": state}}) == []


def test_jobs_without_a_producer_are_not_ours_to_judge() -> None:
    anonymous = {**job("r", 0), "dag_id": None}
    assert orphans([anonymous], lambda dag_id, run_ids: {}) == []
