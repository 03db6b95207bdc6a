"""The machine catalog (``include/machines.yaml``): loaded lazily, validated, one entry per machine."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from operators.hpc.adapters import ADAPTERS
from operators.hpc.spec import JobSpecError, check_path

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "include" / "machines.yaml"


class MachineCatalogError(ValueError):
    """A catalog entry that cannot be used; the message names the machine and the field."""


@dataclass(frozen=True)
class Machine:
    name: str
    connection: str | None
    batch_system: str
    workdir: str
    default_partition: str | None = None
    enabled: bool = True


def _home() -> str:
    if "URGENTFLOW_HOME" in os.environ:
        return os.environ["URGENTFLOW_HOME"]
    return "/var/lib/urgentflow" if os.geteuid() == 0 else str(Path.home() / ".local/share/urgentflow")


def _machine(name: str, raw: Any) -> Machine:
    if not isinstance(raw, dict):
        raise MachineCatalogError(f"machine {name!r}: entry must be a mapping")
    known = {"connection", "batch_system", "workdir", "default_partition", "enabled"}
    unknown = set(raw) - known
    if unknown:
        raise MachineCatalogError(f"machine {name!r}: unknown field(s) {sorted(unknown)}")
    if raw.get("batch_system") not in ADAPTERS:
        raise MachineCatalogError(
            f"machine {name!r}: field batch_system must be one of {sorted(ADAPTERS)}, got {raw.get('batch_system')!r}"
        )
    workdir = str(raw.get("workdir", "")).replace("{urgentflow_home}", _home())
    try:
        check_path(workdir, "workdir")
    except JobSpecError as exc:
        raise MachineCatalogError(f"machine {name!r}: field workdir: {exc}") from None
    connection = raw.get("connection")
    if connection is not None and not isinstance(connection, str):
        raise MachineCatalogError(f"machine {name!r}: field connection must be a connection id or null")
    return Machine(
        name=name,
        connection=connection,
        batch_system=raw["batch_system"],
        workdir=workdir,
        default_partition=raw.get("default_partition"),
        enabled=bool(raw.get("enabled", True)),
    )


@cache
def load_catalog(path: str | None = None) -> dict[str, Machine]:
    source = Path(path or os.environ.get("URGENTFLOW_MACHINES") or DEFAULT_PATH)
    try:
        data = yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise MachineCatalogError(f"cannot read machine catalog {source}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("machines"), dict):
        raise MachineCatalogError(f"{source}: top level must be a mapping with a 'machines' mapping")
    return {name: _machine(name, raw) for name, raw in data["machines"].items()}


def get_machine(name: str) -> Machine:
    catalog = load_catalog()
    if name not in catalog:
        raise MachineCatalogError(f"unknown machine {name!r} (known: {', '.join(sorted(catalog))})")
    return catalog[name]
