"""The service operators at parse time: no I/O, a setup/teardown pair, the extra link serialized."""

from __future__ import annotations

import time

import pytest
from airflow.sdk import DAG

from operators.services.operators import ServiceLink, StartServiceOperator, StopServiceOperator


def test_a_setup_teardown_pair_builds_fast_and_offline() -> None:
    t0 = time.monotonic()
    with DAG("svc_pair", schedule=None) as dag:
        start = StartServiceOperator(
            task_id="viewer",
            image="urgentflow/viewer:1",
            container_port=8000,
            env={"RUN": "{{ run_id }}"},
            docker_conn_id="no_such_connection",  # never looked up at parse time
        )
        stop = StopServiceOperator(task_id="stop_viewer", service_task_id="viewer")
        start >> stop.as_teardown(setups=start)
    assert time.monotonic() - t0 < 1
    assert stop.is_teardown and start.is_setup
    assert dag.task_dict["viewer"] is start and start.docker_conn_id == "no_such_connection"
    assert "env" in StartServiceOperator.template_fields
    assert [link.name for link in start.operator_extra_links] == ["Open service"]


def test_the_link_survives_serialization() -> None:
    from airflow.serialization.serialized_objects import OperatorSerialization

    op = StartServiceOperator(task_id="viewer", image="urgentflow/viewer:1", container_port=8000)
    encoded = OperatorSerialization.serialize_operator(op)
    assert encoded["_operator_extra_links"] == {"Open service": ServiceLink().xcom_key}


@pytest.mark.parametrize("kwargs", [{}, {"service_task_id": "a", "service_id": "svc-x"}])
def test_stop_needs_exactly_one_target(kwargs: dict) -> None:
    op = StopServiceOperator(task_id="stop", **kwargs)
    with pytest.raises(ValueError, match="exactly one"):
        op._targets(object(), hook=None, catalog=None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("returned", "link"),
    [
        ({"url": "http://127.0.0.1:4711/"}, "http://127.0.0.1:4711/"),
        ({"url": "javascript:alert(1)"}, ""),
        ({"url": " data:text/html,<script>x()</script>"}, ""),
        ({"url": None}, ""),
        (None, ""),
    ],
)
def test_the_link_is_only_ever_an_http_url(
    monkeypatch: pytest.MonkeyPatch, returned: object, link: str
) -> None:
    from airflow.sdk.execution_time.xcom import XCom

    monkeypatch.setattr(XCom, "get_value", lambda *, ti_key, key: returned)
    op = StartServiceOperator(task_id="viewer", image="urgentflow/viewer:1", container_port=8000)
    assert ServiceLink().get_link(op, ti_key=None) == link
