"""Selection reuses fresh catalog status, except a ``down`` verdict: that machine is probed again, so a
machine back from an outage is not excluded until the next status run."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from operators.machines import operators
from operators.machines.catalog import load_catalog


class FakeCatalog:
    def __init__(self, rows: dict[str, dict[str, Any]]) -> None:
        self.rows = rows

    def latest_machine_status(self, max_age_seconds: float) -> dict[str, dict[str, Any]]:
        return self.rows


class Probed:
    def __init__(self, machine: str) -> None:
        self.machine = machine

    def to_dict(self) -> dict[str, Any]:
        return {"machine": self.machine, "state": "up", "source": "probe"}

    def record(self, catalog: Any) -> None:
        catalog.rows[self.machine] = self.to_dict()


def test_down_rows_are_probed_again_and_up_rows_reused(monkeypatch: pytest.MonkeyPatch) -> None:
    probed: list[str] = []

    def probe_all(machines: list[Any], timeout: float) -> list[Probed]:
        probed.extend(m.name for m in machines)
        return [Probed(m.name) for m in machines]

    monkeypatch.setattr(operators, "probe_all", probe_all)
    machines = {n: m for n, m in load_catalog().items() if n in ("alpha", "beta", "local")}
    catalog = FakeCatalog({"alpha": {"state": "down", "error": "refused"}, "beta": {"state": "up"}})
    found = operators.statuses_for(machines, catalog, 90, 20, logging.getLogger("t"))  # type: ignore[arg-type]
    assert sorted(probed) == ["alpha", "local"]
    assert found["alpha"]["source"] == "probe" and found["beta"] == {"state": "up"}
    assert catalog.rows["alpha"]["state"] == "up", "the fresh probe is recorded"
