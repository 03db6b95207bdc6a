"""operators/services/steps.py (the worker side of a container step's report) and session.py (when a
user's session on a service is over): the pure parts."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from operators.services.session import ServiceSessionTrigger, session_end
from operators.services.steps import OUTPUTS_MARKER, StepOutputError, parse_report, upstream_outputs

SHA = "a" * 64
NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def test_report_must_name_exactly_the_expected_outputs() -> None:
    line = OUTPUTS_MARKER + json.dumps({"a.json": {"sha256": SHA, "size": 3}})
    assert parse_report([line], {"a.json"}) == {"a.json": {"sha256": SHA, "size": 3}}
    # Docker interleaves stdout and stderr: a stderr line may arrive after the report
    assert parse_report(["fetching", line, "stored a.json: 3 B"], {"a.json"})["a.json"]["size"] == 3
    for bad in (
        None,
        ["done"],
        [line.replace("a.json", "b.json")],
        [line.replace(SHA, "x")],
        [line.replace("3", "-1")],
    ):
        with pytest.raises(StepOutputError):
            parse_report(bad, {"a.json"})


def test_upstream_outputs_by_name_and_unique() -> None:
    one = {"outputs": [{"name": "p", "key": "k/p", "sha256": SHA, "dataset_id": 1}]}
    two = {"outputs": [{"name": "f", "key": "k/f", "sha256": SHA, "dataset_id": 2}]}
    assert set(upstream_outputs([one, two])) == {"p", "f"}
    with pytest.raises(ValueError, match="'p'"):
        upstream_outputs([one, one])


@pytest.mark.parametrize(
    ("row", "keepalive", "ends_in", "reason"),
    [
        (None, 30, 60, "gone"),
        ({"state": "stopped", "last_seen": NOW}, 30, 60, "closed"),
        ({"state": "running", "last_seen": NOW}, 30, 0, "time_up"),
        ({"state": "running", "last_seen": NOW - timedelta(seconds=31)}, 30, 60, "user_left"),
        ({"state": "running", "last_seen": NOW - timedelta(seconds=29)}, 30, 60, None),
        ({"state": "running", "last_seen": NOW - timedelta(hours=5)}, None, 60, None),
    ],
)
def test_session_end(row: dict | None, keepalive: int | None, ends_in: int, reason: str | None) -> None:
    assert session_end(row, keepalive, NOW + timedelta(seconds=ends_in), NOW) == reason


def test_trigger_serializes_what_it_was_given() -> None:
    kwargs = {
        "service_id": "svc-1",
        "ends_at": NOW.isoformat(),
        "keepalive_seconds": 30,
        "poll_interval": 2.0,
        "catalog_conn_id": "catalog_db",
    }
    path, again = ServiceSessionTrigger(**kwargs).serialize()  # type: ignore[arg-type]
    assert path == "operators.services.session.ServiceSessionTrigger" and again == kwargs
    # a trigger serialized by an earlier version (it held its event for ``not_before``) still loads
    _, upgraded = ServiceSessionTrigger(**kwargs, not_before=5.0).serialize()  # type: ignore[arg-type]
    assert upgraded == kwargs
