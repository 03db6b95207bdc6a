"""SelectMachineOperator: choose where a job runs from the catalog, live status and dry runs."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from airflow.sdk import BaseOperator, Context

from operators.catalog.catalog import Catalog, Producer
from operators.hpc.hook import BatchHook
from operators.hpc.load import Estimate
from operators.machines.catalog import Machine, load_catalog
from operators.machines.selection import (
    Candidate,
    NoMachineFits,
    Request,
    apply_estimate,
    candidates,
    choose,
    load_of,
    queue_wait,
)
from operators.machines.status import probe_all


def statuses_for(
    machines: Mapping[str, Machine],
    catalog: Catalog | None,
    max_age_seconds: float,
    probe_timeout: float,
    log: Any,
) -> dict[str, dict[str, Any]]:
    """The catalog's status rows younger than ``max_age_seconds``; machines without one, or whose row
    says ``down`` (a machine back from an outage must not stay excluded until the next status run),
    are probed now (and the result recorded, so the next caller and the status page see it)."""
    found: dict[str, dict[str, Any]] = {}
    if catalog is not None:
        try:
            rows = catalog.latest_machine_status(max_age_seconds)
            found = {n: dict(rows[n]) for n in machines if n in rows and rows[n].get("state") != "down"}
        except Exception as exc:  # the catalog is an aid here, not a requirement
            log.warning("Machine status from the catalog unavailable (%s); probing live", exc)
            catalog = None
    stale = [m for name, m in machines.items() if name not in found]
    for status in probe_all(stale, timeout=probe_timeout):
        found[status.machine] = status.to_dict()
        if catalog is not None:
            status.record(catalog)
    return found


def _estimate(
    candidate: Candidate, request: Request, machine: Machine, status: Mapping[str, Any]
) -> Candidate:
    if not candidate.eligible or candidate.partition is None:
        return candidate
    hook = BatchHook(machine)
    command = hook.adapter.estimate_command(
        candidate.partition, request.cores, request.memory_mb, request.walltime_minutes
    )
    if command is None:
        load = load_of(status, candidate.partition)
        wait = queue_wait(request, load) if load else None
        return apply_estimate(candidate, Estimate(True, wait), "queue")
    try:
        out = hook.transport.run(command, timeout=30)
    except Exception as exc:
        return apply_estimate(candidate, Estimate(False, None, f"{type(exc).__name__}: {exc}"), "dry run")
    return apply_estimate(candidate, hook.adapter.parse_estimate(out.stdout), "dry run")


def decide(
    request: Request,
    catalog: Catalog | None,
    members: int = 1,
    max_status_age_seconds: float = 90.0,
    probe_timeout: float = 20.0,
    log: Any = None,
) -> tuple[list[Candidate], list[dict[str, Any]]]:
    """Every candidate considered (with numbers or the reason it is out) and ``members`` assignments.

    Raises ``NoMachineFits`` (its message lists each machine's reason) when nothing fits.
    """
    log = log or logging.getLogger(__name__)
    machines = load_catalog()
    unknown = sorted(set(request.machines or ()) - set(machines))
    if unknown:
        raise ValueError(f"unknown machine(s) {unknown} (known: {sorted(machines)})")
    considered = {n: m for n, m in machines.items() if request.machines is None or n in request.machines}
    enabled = {n: m for n, m in considered.items() if m.enabled}
    statuses = statuses_for(enabled, catalog, max_status_age_seconds, probe_timeout, log)
    found = candidates(request, considered, statuses)
    with ThreadPoolExecutor(max_workers=max(1, len(found))) as pool:
        found = list(
            pool.map(lambda c: _estimate(c, request, machines[c.machine], statuses.get(c.machine, {})), found)
        )
    for c in found:
        log.info(
            "candidate %-8s %-8s %s",
            c.machine,
            c.partition or "-",
            f"wait {c.wait_seconds or 0:.0f} s ({c.estimate_source}), cost {c.cost}, free cores {c.free_cores}"
            if c.eligible
            else f"excluded: {c.reason}",
        )
    return found, [c.to_dict() for c in choose(request, found, members)]


class SelectMachineOperator(BaseOperator):
    """Pick the machine (and partition) for a job: see ``operators.machines.selection`` for the policy.

    Returns ``{machine, partition, wait_seconds, cost, ...}``; with ``members=N`` a list of N such
    assignments spread over machines by estimated start (for ``.expand_kwargs`` of an ensemble). The
    decision and every candidate considered (with the reason when excluded) are logged and stored in
    the catalog (``machine_selections``). Fails with ``NoMachineFits`` listing each machine's reason.
    """

    template_fields: Sequence[str] = (
        "cores",
        "memory_mb",
        "walltime_minutes",
        "nodes",
        "machines",
        "partition",
        "batch_systems",
        "members",
    )
    ui_color = "#f5e6c9"

    def __init__(
        self,
        *,
        cores: int = 1,
        memory_mb: int | None = None,
        walltime_minutes: int = 10,
        nodes: int = 1,
        machines: Sequence[str] | None = None,
        partition: str | None = None,
        batch_systems: Sequence[str] | None = None,
        max_cost_weight: float | None = None,
        members: int | None = None,
        max_status_age_seconds: float = 90.0,
        probe_timeout: float = 20.0,
        catalog_conn_id: str | None = "catalog_db",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cores = cores
        self.memory_mb = memory_mb
        self.walltime_minutes = walltime_minutes
        self.nodes = nodes
        self.machines = machines
        self.partition = partition
        self.batch_systems = batch_systems
        self.max_cost_weight = max_cost_weight
        self.members = members
        self.max_status_age_seconds = max_status_age_seconds
        self.probe_timeout = probe_timeout
        self.catalog_conn_id = catalog_conn_id

    def _request(self) -> Request:
        def optional_int(value: Any) -> int | None:
            return None if value in (None, "", "None") else int(value)

        return Request(
            cores=int(self.cores),
            memory_mb=optional_int(self.memory_mb),
            walltime_minutes=int(self.walltime_minutes),
            nodes=int(self.nodes),
            machines=list(self.machines) if self.machines else None,
            partition=self.partition or None,
            batch_systems=list(self.batch_systems) if self.batch_systems else None,
            max_cost_weight=self.max_cost_weight,
        )

    def execute(self, context: Context) -> Any:
        request = self._request()
        members = None if self.members in (None, "", "None") else int(self.members)
        if members is not None and not 1 <= members <= 10_000:
            raise ValueError(f"members must be 1..10000, got {members}")
        catalog = Catalog(self.catalog_conn_id) if self.catalog_conn_id else None
        try:
            found, chosen = decide(
                request, catalog, members or 1, self.max_status_age_seconds, self.probe_timeout, self.log
            )
        except NoMachineFits as exc:
            self._record(context, catalog, request, exc.considered, None)
            raise
        result: Any = chosen if members is not None else chosen[0]
        self._record(context, catalog, request, found, result)
        spread = sorted({(c["machine"], c["partition"]) for c in chosen})
        self.log.info("Selected %s for %d member(s)", ", ".join(f"{m}/{p}" for m, p in spread), len(chosen))
        return result

    def _record(
        self, context: Context, catalog: Catalog | None, request: Request, found: list[Candidate], chosen: Any
    ) -> None:
        if catalog is None:
            return
        producer = Producer.of(context["ti"])
        try:
            catalog.record_selection(producer, request.to_dict(), [c.to_dict() for c in found], chosen)
        except Exception as exc:  # the decision stands; its record is best effort
            self.log.warning("Could not record the selection in the catalog: %s", exc)
