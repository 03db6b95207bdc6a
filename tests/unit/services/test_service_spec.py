"""Service ids, labels and specs: pure functions, no Docker."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from operators.services.hook import Service
from operators.services.spec import Mount, ServiceLabels, ServiceSpec, container_name, service_id

WHO = ServiceLabels(
    service_id=service_id("flood", "manual__2026-01-01T00:00:00+00:00", "viewer", 3),
    dag_id="flood",
    run_id="manual__2026-01-01T00:00:00+00:00",
    task_id="viewer",
    map_index=3,
    owner="ops",
    expires_at=datetime(2026, 1, 1, 1, 30, tzinfo=UTC),
    keepalive_seconds=120,
)


def test_service_id_is_deterministic_and_distinguishes_each_part() -> None:
    assert service_id("d", "r", "t", -1) == service_id("d", "r", "t", None) == service_id("d", "r", "t")
    ids = {
        service_id("d", "r", "t", -1),
        service_id("d", "r", "t", 0),
        service_id("d", "r2", "t", -1),
        service_id("d2", "r", "t", -1),
        service_id("d", "r", "t2", -1),
        service_id("d", "r\x1ft", "", -1),  # no ambiguity from joining the parts
    }
    assert len(ids) == 6
    sid = service_id("d", "r", "t")
    assert sid.startswith("svc-") and len(sid) == 28 and sid[4:].isalnum()
    assert container_name(sid) == f"uf-{sid}"


def test_labels_round_trip_and_carry_everything_the_reaper_needs() -> None:
    labels = WHO.labels()
    assert labels["urgentflow.service"] == "1"
    assert labels["urgentflow.expires_at"] == "2026-01-01T01:30:00+00:00"
    assert labels["urgentflow.keepalive_seconds"] == "120"
    assert all(isinstance(v, str) for v in labels.values())
    assert ServiceLabels.parse(labels) == WHO


def test_outlive_run_round_trips() -> None:
    keeper = ServiceLabels("svc-x", "d", "r", "t", outlive_run=True)
    assert keeper.labels()["urgentflow.outlive_run"] == "1"
    assert ServiceLabels.parse(keeper.labels()) == keeper
    assert "urgentflow.outlive_run" not in ServiceLabels("svc-x", "d", "r", "t").labels()


def test_a_service_without_keepalive_has_no_keepalive_label() -> None:
    labels = ServiceLabels("svc-x", "d", "r", "t").labels()
    assert "urgentflow.keepalive_seconds" not in labels and "urgentflow.expires_at" not in labels
    parsed = ServiceLabels.parse(labels)
    assert parsed is not None and parsed.keepalive_seconds is None and parsed.expires_at is None


@pytest.mark.parametrize(
    "labels",
    [{}, {"urgentflow.service_id": "svc-x"}, {"urgentflow.service": "0", "urgentflow.service_id": "svc-x"}],
)
def test_containers_without_our_label_are_not_ours(labels: dict[str, str]) -> None:
    assert ServiceLabels.parse(labels) is None
    assert Service.from_listing({"Id": "abc", "Labels": labels, "Created": 0}) is None


def test_listing_entry_gives_url_on_the_published_address() -> None:
    item = {
        "Id": "c" * 64,
        "State": "running",
        "Labels": WHO.labels(),
        "Created": 1_767_225_600,
        "Ports": [{"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": 49153, "Type": "tcp"}],
    }
    service = Service.from_listing(item)
    assert service is not None and service.running
    assert service.url == "http://127.0.0.1:49153"
    assert service.identity == WHO
    assert service.created_at == datetime(2026, 1, 1, tzinfo=UTC)
    stopped = Service.from_listing({**item, "State": "exited", "Ports": []})
    assert stopped is not None and not stopped.running and stopped.url is None


def test_spec_keeps_hostile_values_as_data_and_converts_limits() -> None:
    spec = ServiceSpec.build(
        WHO,
        image="urgentflow/viewer:1",
        container_port=8000,
        command=["echo", "$(touch /tmp/canary)", ";", "a\nb"],
        env={"NOTE": "$(touch /tmp/canary); rm -rf /\n", "N": 3},
        mounts=[{"source": "/srv/results", "target": "/data"}],
        cpus=0.5,
        memory_mb=256,
    )
    assert spec.command == ("echo", "$(touch /tmp/canary)", ";", "a\nb")
    assert spec.env == {"NOTE": "$(touch /tmp/canary); rm -rf /\n", "N": "3"}
    assert spec.mounts == (Mount("/srv/results", "/data", read_only=True),)
    assert spec.nano_cpus == 500_000_000
    assert spec.mem_limit_bytes == 256 * 1024 * 1024


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"command": "python3 -m http.server"}, TypeError),
        ({"command": ["python3", 3]}, TypeError),
        ({"env": {"BAD NAME": "x"}}, ValueError),
        ({"env": {"A=B": "x"}}, ValueError),
        ({"mounts": [{"source": "relative", "target": "/data"}]}, ValueError),
        ({"container_port": 0}, ValueError),
        ({"cpus": 0}, ValueError),
        ({"memory_mb": -1}, ValueError),
    ],
)
def test_spec_refuses(kwargs: dict, error: type[Exception]) -> None:
    args = {"image": "urgentflow/viewer:1", "container_port": 8000, **kwargs}
    with pytest.raises(error):
        ServiceSpec.build(WHO, **args)
