"""The Machines page renders what the catalog holds, and escapes it (errors come from remote hosts)."""

from __future__ import annotations

from urgentflow_api.machines import MachineOut, render_page


def test_page_escapes_remote_text_and_shows_load() -> None:
    machine = MachineOut(
        name="alpha",
        batch_system="slurm",
        enabled=True,
        cost_weight=1.0,
        max_jobs_per_user=None,
        partitions={"debug": {"max_walltime_minutes": 60}},
        state="degraded",
        status={
            "latency_ms": 3.5,
            "observed_at": "2026-11-26T22:00:00+00:00",
            "error": "<script>alert(1)</script>",
            "detail": {
                "partitions": {
                    "debug": {
                        "cores_idle": 4,
                        "cores_total": 8,
                        "nodes_idle": 1,
                        "nodes_down": 1,
                        "nodes_total": 2,
                    }
                }
            },
        },
        jobs=[{"native_id": "42", "state": "RUNNING", "dag_id": "d<b>"}],
    )
    page = render_page([machine])
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page
    assert "d&lt;b&gt;" in page
    assert "<td>4 / 8</td>" in page and "1 idle, 1 down of 2" in page and ">degraded<" in page


def test_empty_catalog_page() -> None:
    assert "No machines in the catalog." in render_page([])
