"""A BatchJobOperator task's arguments worked out in the triggerer, from the DAG as the scheduler stores it."""

from __future__ import annotations

from typing import Any

import pendulum
import pytest
from airflow.sdk import DAG, task
from airflow.serialization.decoders import smart_decode_trigger_kwargs
from airflow.serialization.serialized_objects import DagSerialization

from operators.hpc.operators import BatchJobOperator
from operators.hpc.trigger_args import TriggerTI, Unresolvable, operator_kwargs

MACHINE = "{{ ti.xcom_pull(task_ids='select')['machine'] }}"


class FakeTI:
    """What the triggerer hands a trigger: the serialized task, the map index and XCom reads."""

    def __init__(self, task: Any, map_index: int, xcoms: dict[tuple[str, str, int], Any]) -> None:
        self.task, self.map_index, self.xcoms = task, map_index, xcoms
        self.dag_id, self.run_id, self.task_id = task.dag.dag_id, "manual__1", task.task_id
        self.pulls: list[tuple[str, str, int]] = []

    def xcom_pull(self, task_ids: str, key: str = "return_value", map_indexes: Any = None, **_: Any) -> Any:
        assert isinstance(map_indexes, int), "a whole-task pull is not served in the triggerer"
        self.pulls.append((task_ids, key, map_indexes))
        return self.xcoms[(task_ids, key, map_indexes)]

    def get_template_context(self) -> dict[str, Any]:
        return {"params": {"walltime": 7}, "ti": self, "task_instance": self}


def stored_task(build: Any, task_id: str = "member") -> Any:
    with DAG(
        "d", schedule=None, start_date=pendulum.datetime(2026, 1, 1), render_template_as_native_obj=True
    ) as dag:
        build()
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task(task_id)


def test_a_mapped_member_gets_its_partial_and_expanded_arguments_rendered() -> None:
    def build() -> None:
        @task
        def select() -> dict:
            return {}

        @task(multiple_outputs=True)
        def prepare() -> dict:
            return {}

        @task
        def commands() -> list:
            return []

        inputs = prepare()
        select() >> BatchJobOperator.partial(
            task_id="member",
            machine=MACHINE,
            walltime_minutes="{{ params.walltime }}",
            held_timeout_minutes=inputs["held"],  # type: ignore[index]
            memory_mb=500,
        ).expand(command=commands())

    member = stored_task(build)
    xcoms = {
        ("select", "return_value", -1): {"machine": "alpha"},
        ("prepare", "held", -1): 2.5,
        ("commands", "return_value", -1): [["a", "{{ ti.map_index }}"], ["b", "x"]],
    }
    ti = FakeTI(member, 0, xcoms)
    kwargs = operator_kwargs(ti, None)
    assert kwargs["machine"] == "alpha" and kwargs["walltime_minutes"] == 7  # native: an int, as a worker
    assert kwargs["held_timeout_minutes"] == 2.5 and kwargs["memory_mb"] == 500
    assert kwargs["command"] == ["a", 0]
    assert operator_kwargs(FakeTI(member, 1, xcoms), None)["command"] == ["b", "x"]
    with pytest.raises(Unresolvable, match="map index 2"):
        operator_kwargs(FakeTI(member, 2, xcoms), None)


def test_expand_kwargs_gives_each_member_its_dict() -> None:
    def build() -> None:
        @task
        def specs() -> list:
            return []

        BatchJobOperator.partial(task_id="member", machine="beta").expand_kwargs(specs())

    member = stored_task(build)
    xcoms = {("specs", "return_value", -1): [{"command": ["x"], "memory_mb": 10}, {"command": ["y"]}]}
    first = operator_kwargs(FakeTI(member, 0, xcoms), None)
    assert (first["command"], first["memory_mb"], first["machine"]) == (["x"], 10, "beta")
    assert operator_kwargs(FakeTI(member, 1, xcoms), None)["command"] == ["y"]


def test_what_only_a_worker_can_resolve_is_refused() -> None:
    def build() -> None:
        @task
        def commands() -> list:
            return []

        @task
        def per_member(x: int) -> str:
            return ""

        per_member.expand(x=[1, 2])
        BatchJobOperator.partial(
            task_id="member", machine="{{ ti.xcom_pull(task_ids='per_member') }}"
        ).expand(command=commands())

    member = stored_task(build)
    xcoms = {("commands", "return_value", -1): [["a"]]}
    with pytest.raises(Unresolvable, match="'per_member' is mapped"):
        operator_kwargs(FakeTI(member, 0, xcoms), None)


def test_an_unmapped_task_uses_the_arguments_it_stored_and_never_reads_xcom_of_several_tasks() -> None:
    def build() -> None:
        BatchJobOperator(task_id="one", machine="{{ params.walltime }}-m", command=["x"])

    one = stored_task(build, "one")
    # the trigger's kwargs as the triggerer decodes them from the trigger row the scheduler wrote
    stored = smart_decode_trigger_kwargs(one.start_trigger_args.trigger_kwargs)["operator_kwargs"]
    assert one.start_from_trigger and stored["command"] == ["x"]
    kwargs = operator_kwargs(FakeTI(one, -1, {}), stored)
    assert kwargs["machine"] == "7-m"
    with pytest.raises(Unresolvable, match="several tasks"):
        TriggerTI(FakeTI(one, -1, {}), one.dag).xcom_pull(task_ids=["a", "b"])


def test_an_xcomarg_argument_or_deferrable_false_keeps_an_unmapped_task_on_workers() -> None:
    def build() -> None:
        @task
        def machine() -> str:
            return "alpha"

        BatchJobOperator(task_id="xcom", machine=machine(), command=["x"])  # type: ignore[arg-type]
        BatchJobOperator(task_id="blocking", machine="alpha", command=["x"], deferrable=False)

    assert stored_task(build, "xcom").start_from_trigger is False
    assert stored_task(build, "blocking").start_from_trigger is False


def test_identical_reads_are_made_once_in_flight_and_kept_only_briefly() -> None:
    import threading
    import time

    from operators.hpc.trigger_args import _SingleFlight

    reads = _SingleFlight(keep_seconds=0.5)
    calls: list[int] = []

    def fetch() -> dict:
        calls.append(1)
        time.sleep(0.2)
        return {"machine": "alpha"}

    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(reads.read(("k",), fetch))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1 and results == [{"machine": "alpha"}] * 8
    assert len({id(r) for r in results}) == 8, "every reader gets its own copy"
    results[0]["machine"] = "changed by a reader"
    assert reads.read(("k",), fetch) == {"machine": "alpha"} and len(calls) == 1, "kept, and unchanged"
    time.sleep(0.6)
    reads.read(("k",), fetch)
    assert len(calls) == 2, "a read after the keep time reads again"

    def failing() -> dict:
        calls.append(1)
        raise ConnectionError("supervisor")

    for _ in range(2):
        with pytest.raises(ConnectionError):
            reads.read(("bad",), failing)
    assert len(calls) == 4, "a failed read is not kept"
