"""Submission ahead (the first member trigger submits its deferred siblings' first jobs): the rules."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from airflow.sdk.execution_time.task_runner import RuntimeTaskInstance

from operators.hpc import ahead
from operators.hpc.spec import JobSpec
from operators.hpc.trigger_args import sibling_ti


def spec(i: int, command: str = "echo") -> JobSpec:
    return JobSpec(name=f"uf-d-member-{i}-abc", command=["bash", "-c", command], workdir=f"/w/member.{i}")


class StatesTI:
    dag_id, run_id, task_id, map_index = "d", "manual__1", "member", 1

    def __init__(self, states: dict[str, str]) -> None:
        self.states = states

    def get_task_states(self, **query: Any) -> dict[str, dict[str, str]]:
        assert query == {"dag_id": "d", "task_ids": ["member"], "run_ids": ["manual__1"]}
        return {"manual__1": self.states}


def test_only_deferred_siblings_are_led_never_the_leader_itself() -> None:
    ti = StatesTI(
        {
            "member_0": "deferred",
            "member_1": "deferred",  # the leader
            "member_2": "success",  # its job ran: a later job is its own decision
            "member_3": "deferred",
            "member_4": "scheduled",  # not handed to the triggerer yet: it submits its own
            "member_10": "deferred",
        }
    )
    assert ahead.deferred_siblings(ti) == [0, 3, 10]


def test_a_sibling_is_the_same_task_instance_with_its_own_index_and_context() -> None:
    ti = RuntimeTaskInstance.model_construct(
        dag_id="d", run_id="r", task_id="member", map_index=0, try_number=1
    )
    ti._cached_template_context = {"ti": ti}
    sibling = sibling_ti(ti, 7)
    assert (sibling.map_index, sibling.task_id, sibling.run_id) == (7, "member", "r")
    assert sibling._cached_template_context is None, "built afresh for the sibling"
    assert ti.map_index == 0 and ti._cached_template_context is not None, "the leader's own is untouched"


class FakeSubmitter:
    key = "slurm@hpc_alpha"

    def __init__(self, results: dict[str, Any]) -> None:
        self.results = results

    async def submit_ahead(self, s: JobSpec) -> tuple[str, bool] | None:
        result = self.results[s.name]
        if isinstance(result, BaseException):
            raise result
        return result


def sibling(i: int, s: JobSpec | None = None) -> ahead.Sibling:
    return ahead.Sibling(i, s or spec(i), "alpha", "hpc_alpha", "slurm", None)


def test_the_leader_keeps_what_it_submitted_and_each_sibling_claims_its_own_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    submitter = FakeSubmitter(
        {
            spec(0).name: ("100", False),  # submitted ahead
            spec(2).name: None,  # it had a job before: left to its own trigger
            spec(3).name: ("300", True),  # its own trigger got there first
            spec(4).name: RuntimeError("ssh down"),  # its own trigger tries again
        }
    )
    monkeypatch.setattr(ahead, "get_submitter", lambda conn_id, batch_system: submitter)
    siblings = [sibling(i) for i in (0, 2, 3, 4)]

    async def in_thread(function: Any, *args: Any) -> Any:
        return function(*args)

    async def scenario() -> None:
        ti = StatesTI({})
        ahead.start(ti, lambda _ti: siblings, in_thread)
        ahead.start(ti, lambda _ti: pytest.fail("led twice"), in_thread)  # one leader per ensemble
        await asyncio.gather(*ahead._state().tasks)
        key = submitter.key
        assert ahead.claim(key, spec(0), "100", True) is False, "the job submitted ahead is the member's own"
        assert ahead.claim(key, spec(0), "100", True) is True, "claimed once: a later look-up is a re-attach"
        assert ahead.claim(key, spec(3), "300", True) is True
        assert ahead.claim(key, spec(2), "200", False) is False

    asyncio.run(scenario())


def test_a_job_submitted_ahead_with_other_arguments_than_the_task_s_own_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    submitter = FakeSubmitter({spec(5).name: ("500", False)})
    monkeypatch.setattr(ahead, "get_submitter", lambda conn_id, batch_system: submitter)

    async def in_thread(function: Any, *args: Any) -> Any:
        return function(*args)

    async def scenario() -> None:
        ahead.start(StatesTI({}), lambda _ti: [sibling(5)], in_thread)
        await asyncio.gather(*ahead._state().tasks)
        with pytest.raises(ahead.Mismatch, match="other arguments"):
            ahead.claim(submitter.key, spec(5, command="echo other"), "500", True)

    asyncio.run(scenario())
