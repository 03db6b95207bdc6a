"""The selection policy on fixed inputs: catalog entries, recorded Slurm load outputs, estimates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from operators.hpc.adapters.slurm import SlurmAdapter
from operators.hpc.load import Estimate, PartitionLoad
from operators.machines.catalog import parse_catalog
from operators.machines.selection import (
    NoMachineFits,
    Request,
    apply_estimate,
    candidates,
    choose,
    queue_wait,
    rank,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "slurm"
PART = {"nodes": 2, "cores_per_node": 4, "memory_mb_per_node": 4000, "max_walltime_minutes": 60}


def machine(cost: float, **extra: Any) -> dict[str, Any]:
    return {
        "connection": "c",
        "batch_system": "slurm",
        "workdir": "/w",
        "cost_weight": cost,
        "partitions": {"debug": {**PART, "default": True}, "long": {**PART, "max_walltime_minutes": 1440}},
        **extra,
    }


CATALOG = parse_catalog(
    {"machines": {"alpha": machine(1.0), "beta": machine(2.0), "gamma": machine(0.5, enabled=False)}}
)


def status(fixture: str, state: str | None = None) -> dict[str, Any]:
    load = SlurmAdapter().parse_load((FIXTURES / fixture).read_text())
    return {"state": state or load.state, "detail": load.to_dict(), "error": ""}


IDLE = status("load_idle_alpha.txt")
FULL = status("load_full_alpha.txt")


def test_idle_cheaper_machine_wins_and_reasons_are_kept() -> None:
    found = candidates(Request(cores=2), CATALOG, {"alpha": IDLE, "beta": IDLE})
    best = rank([apply_estimate(c, Estimate(True, 0.0), "dry run") for c in found])
    assert (best[0].machine, best[0].partition) == ("alpha", "debug")
    assert [c.machine for c in best] == ["alpha", "alpha", "beta", "beta"]
    gamma = next(c for c in found if c.machine == "gamma")
    assert not gamma.eligible and gamma.reason == "disabled in the machine catalog"


def test_earlier_start_beats_cost() -> None:
    found = candidates(Request(cores=4), CATALOG, {"alpha": FULL, "beta": IDLE})
    estimated = [
        apply_estimate(c, Estimate(True, 900.0 if c.machine == "alpha" else 0.0), "dry run") for c in found
    ]
    assert choose(Request(cores=4), estimated)[0].machine == "beta"


def test_down_machine_limit_and_partition_fit_exclude() -> None:
    down = {"state": "down", "detail": {}, "error": "TransportError: connection refused"}
    found = candidates(Request(cores=2, walltime_minutes=120), CATALOG, {"alpha": IDLE, "beta": down})
    reasons = {(c.machine, c.partition): c.reason for c in found}
    assert reasons[("alpha", "debug")] == "walltime 120 min > limit 60 min"
    assert reasons[("alpha", "long")] == ""
    assert reasons[("beta", None)] == "down: TransportError: connection refused"
    too_big = candidates(Request(cores=5), CATALOG, {"alpha": IDLE})
    assert {c.reason for c in too_big if c.machine == "alpha"} == {"5 cores > 4 per node"}


def test_per_user_limit_and_allowed_machines() -> None:
    limited = parse_catalog({"machines": {"alpha": machine(1.0, max_jobs_per_user=3)}})
    found = candidates(Request(), limited, {"alpha": FULL})  # FULL has 3 of our jobs
    assert found[0].reason == "per-user job limit reached (3/3)"
    only_beta = candidates(Request(machines=["beta"]), CATALOG, {"alpha": IDLE, "beta": IDLE})
    assert {c.machine for c in only_beta if c.eligible} == {"beta"}


def test_failed_dry_run_excludes_with_the_batch_system_reason() -> None:
    found = candidates(Request(cores=2), CATALOG, {"alpha": IDLE})
    refused = SlurmAdapter().parse_estimate((FIXTURES / "estimate_too_many_cpus_alpha.txt").read_text())
    judged = [apply_estimate(c, refused, "dry run") for c in found if c.machine == "alpha"]
    with pytest.raises(NoMachineFits, match="alpha/debug: dry run: allocation failure: More processors"):
        choose(Request(cores=2), judged)


def test_members_spread_when_the_cheap_machine_fills() -> None:
    request = Request(cores=4, walltime_minutes=30)
    found = [
        apply_estimate(c, Estimate(True, 0.0), "dry run")
        for c in candidates(
            request,
            CATALOG,
            {"alpha": IDLE, "beta": IDLE, "gamma": IDLE},
        )
        if c.partition == "debug"
    ]
    placed = [(c.machine, c.partition) for c in choose(request, found, members=4)]
    # alpha (cheaper) takes what fits now (8 cores = 2 members), then beta starts earlier than a queue
    assert placed == [("alpha", "debug"), ("alpha", "debug"), ("beta", "debug"), ("beta", "debug")]


def test_queue_wait_without_a_dry_run() -> None:
    idle = PartitionLoad("q", cores_total=8, cores_idle=8)
    busy = PartitionLoad("q", cores_total=8, cores_idle=0, cores_pending=8)
    assert queue_wait(Request(cores=2, walltime_minutes=10), idle) == 0
    assert queue_wait(Request(cores=2, walltime_minutes=10), busy) == 2 * 600


@pytest.mark.parametrize("bad", [{"cores": 0}, {"walltime_minutes": -1}, {"memory_mb": 0}, {"cores": True}])
def test_bad_request_is_refused(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be a positive integer"):
        Request(**bad)
