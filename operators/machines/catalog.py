"""The machine catalog (``include/machines.yaml``): loaded lazily, validated against ``SCHEMA``.

A bad entry fails loading with the machine and the field named, e.g.
``machine 'alpha': field partitions.debug.cores_per_node: 0 is less than the minimum of 1``.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from operators.home import urgentflow_home
from operators.hpc.adapters import ADAPTERS
from operators.hpc.spec import JobSpecError, check_path
from operators.yamlconfig import check_schema, read_yaml

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "include" / "machines.yaml"
NAME = "^[A-Za-z0-9_-]{1,64}$"

PARTITION_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["nodes", "cores_per_node", "memory_mb_per_node", "max_walltime_minutes"],
    "properties": {
        "default": {"type": "boolean"},
        "nodes": {"type": "integer", "minimum": 1},
        "cores_per_node": {"type": "integer", "minimum": 1},
        "memory_mb_per_node": {"type": "integer", "minimum": 1},
        "max_walltime_minutes": {"type": "integer", "minimum": 1},
    },
}

MACHINE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["connection", "batch_system", "workdir", "partitions"],
    "properties": {
        "connection": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9_.-]{1,250}$"},
        "batch_system": {"enum": sorted(ADAPTERS)},
        "enabled": {"type": "boolean"},
        "workdir": {"type": "string", "minLength": 1},
        "scratch_dir": {"type": "string", "minLength": 1},
        "python": {"type": "string", "pattern": "^(/[A-Za-z0-9._/+-]+|[A-Za-z0-9._+-]+)$"},
        "modules": {"type": "array", "items": {"type": "string", "pattern": "^[A-Za-z0-9._/+-]{1,128}$"}},
        "cost_weight": {"type": "number", "minimum": 0},
        "max_jobs_per_user": {"type": "integer", "minimum": 1},
        "held_timeout_minutes": {"type": "number", "exclusiveMinimum": 0, "maximum": 10080},
        "watch_exit_files": {"type": "boolean"},
        "jobs_reach_store": {"type": "boolean"},
        "completion_notice": {"type": "boolean"},
        "partitions": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": "^[A-Za-z0-9_.-]{1,64}$"},  # Grid Engine queues: all.q
            "additionalProperties": PARTITION_SCHEMA,
        },
    },
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["machines"],
    "properties": {
        "machines": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": NAME},
            "additionalProperties": MACHINE_SCHEMA,
        }
    },
}


class MachineCatalogError(ValueError):
    """A catalog entry that cannot be used; the message names the machine and the field."""


@dataclass(frozen=True)
class Partition:
    name: str
    nodes: int
    cores_per_node: int
    memory_mb_per_node: int
    max_walltime_minutes: int
    default: bool = False

    @property
    def cores(self) -> int:
        return self.nodes * self.cores_per_node


@dataclass(frozen=True)
class Machine:
    name: str
    connection: str | None
    batch_system: str
    workdir: str
    partitions: Mapping[str, Partition] = field(default_factory=dict)
    enabled: bool = True
    scratch_dir: str | None = None
    python: str = "python3"
    modules: tuple[str, ...] = ()
    cost_weight: float = 1.0
    max_jobs_per_user: int | None = None
    # a job on a hold this long (the site's admin did not release it) is cancelled and submitted afresh
    held_timeout_minutes: float = 30.0
    # between two status polls, the poll command waits on the machine for a job's exit file (a few file
    # tests per 0.2 s on the login node): a job that ends is known at once, not an interval later
    watch_exit_files: bool = True
    # its jobs reach the object store (its compute nodes can open the store's address): they may publish
    # their own outputs (BatchJobOperator(outputs=...)); when not, outputs are staged off the machine
    jobs_reach_store: bool = True
    # its jobs tell urgentflow's API when they end (their compute nodes reach the API server): the poller
    # looks at once instead of at its next poll (operators.hpc.notice); polling stays the fallback
    completion_notice: bool = False

    @property
    def default_partition(self) -> str | None:
        defaults = [p.name for p in self.partitions.values() if p.default]
        return defaults[0] if defaults else next(iter(self.partitions), None)

    def setup_lines(self) -> list[str]:
        """Shell lines every job on this machine starts with: its modules and its tool paths."""
        q = shlex.quote
        lines = [f"module load {q(m)}" for m in self.modules]
        lines.append(f"export URGENTFLOW_PYTHON={q(self.python)}")
        if self.scratch_dir:
            lines.append(f"mkdir -p {q(self.scratch_dir)} && export URGENTFLOW_SCRATCH={q(self.scratch_dir)}")
        return lines


def _dir(name: str, what: str, value: str) -> str:
    path = value.replace("{urgentflow_home}", str(urgentflow_home()))
    try:
        return check_path(path, what)
    except JobSpecError as exc:
        raise MachineCatalogError(f"machine {name!r}: field {what}: {exc}") from None


def _machine(name: str, raw: dict[str, Any]) -> Machine:
    partitions = {pname: Partition(name=pname, **p) for pname, p in raw["partitions"].items()}
    if sum(p.default for p in partitions.values()) > 1:
        raise MachineCatalogError(f"machine {name!r}: field partitions: more than one default partition")
    return Machine(
        name=name,
        connection=raw["connection"],
        batch_system=raw["batch_system"],
        workdir=_dir(name, "workdir", raw["workdir"]),
        partitions=partitions,
        enabled=raw.get("enabled", True),
        scratch_dir=_dir(name, "scratch_dir", raw["scratch_dir"]) if "scratch_dir" in raw else None,
        python=raw.get("python", "python3"),
        modules=tuple(raw.get("modules", ())),
        cost_weight=float(raw.get("cost_weight", 1.0)),
        max_jobs_per_user=raw.get("max_jobs_per_user"),
        held_timeout_minutes=float(raw.get("held_timeout_minutes", 30.0)),
        watch_exit_files=bool(raw.get("watch_exit_files", True)),
        jobs_reach_store=bool(raw.get("jobs_reach_store", True)),
        completion_notice=bool(raw.get("completion_notice", False)),
    )


def parse_catalog(data: Any, source: Path = DEFAULT_PATH) -> dict[str, Machine]:
    check_schema(data, SCHEMA, source, "machines", "machine", MachineCatalogError)
    return {name: _machine(name, raw) for name, raw in data["machines"].items()}


@cache
def load_catalog(path: str | None = None) -> dict[str, Machine]:
    source = Path(path or os.environ.get("URGENTFLOW_MACHINES") or DEFAULT_PATH)
    return parse_catalog(read_yaml(source, "machine catalog", MachineCatalogError), source)


def get_machine(name: str) -> Machine:
    catalog = load_catalog()
    if name not in catalog:
        raise MachineCatalogError(f"unknown machine {name!r} (known: {', '.join(sorted(catalog))})")
    return catalog[name]
