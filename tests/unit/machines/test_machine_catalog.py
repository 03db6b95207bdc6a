"""The machine catalog: the shipped file loads; every kind of bad entry names the machine and the field."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from operators.machines.catalog import DEFAULT_PATH, MachineCatalogError, load_catalog, parse_catalog

GOOD: dict[str, Any] = {
    "machines": {
        "m1": {
            "connection": "hpc_m1",
            "batch_system": "slurm",
            "workdir": "/scratch/jobs",
            "cost_weight": 1.5,
            "modules": ["gcc/12", "python/3.11"],
            "partitions": {
                "short": {
                    "default": True,
                    "nodes": 2,
                    "cores_per_node": 8,
                    "memory_mb_per_node": 16000,
                    "max_walltime_minutes": 30,
                },
                "long": {
                    "nodes": 4,
                    "cores_per_node": 8,
                    "memory_mb_per_node": 16000,
                    "max_walltime_minutes": 2880,
                },
            },
        }
    }
}


def test_shipped_catalog_loads_with_its_test_bed_machines() -> None:
    catalog = load_catalog(str(DEFAULT_PATH))
    assert {"alpha", "beta", "local"} <= set(catalog)
    alpha = catalog["alpha"]
    assert alpha.default_partition == "debug" and alpha.partitions["long"].max_walltime_minutes == 1440
    assert alpha.partitions["debug"].cores == 8 and alpha.cost_weight < catalog["beta"].cost_weight


def test_good_entry_gives_partitions_default_and_setup_lines() -> None:
    m1 = parse_catalog(GOOD)["m1"]
    assert m1.default_partition == "short"
    assert m1.partitions["long"].cores == 32
    assert m1.setup_lines()[:2] == ["module load gcc/12", "module load python/3.11"]


def with_change(path: list[str], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    node = data["machines"]["m1"]
    for part in path[:-1]:
        node = node[part]
    if value is None:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return data


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (["batch_system"], "lsf", "machine 'm1': field batch_system: 'lsf' is not one of"),
        (
            ["partitions", "short", "cores_per_node"],
            0,
            "field partitions.short.cores_per_node: 0 is less than",
        ),
        (
            ["partitions", "long", "max_walltime_minutes"],
            None,
            "field partitions.long: 'max_walltime_minutes' is a required",
        ),
        (["partitions", "long", "default"], True, "field partitions: more than one default partition"),
        (["partitions"], {}, "field partitions: {} should be non-empty"),
        (["modules"], ["gcc; rm -rf /"], "field modules.0: 'gcc; rm -rf /' does not match"),
        (["connection"], "hpc m1", "field connection: 'hpc m1' does not match"),
        (["workdir"], "/scratch/../etc", "machine 'm1': field workdir"),
        (["cost_weight"], -1, "field cost_weight: -1 is less than the minimum of 0"),
        (["colour"], "red", "machine 'm1': field (entry): Additional properties are not allowed ('colour'"),
        (["connection"], None, "machine 'm1': field (entry): 'connection' is a required property"),
    ],
)
def test_bad_entries_name_machine_and_field(path: list[str], value: Any, message: str) -> None:
    with pytest.raises(MachineCatalogError) as caught:
        parse_catalog(with_change(path, value))
    assert message in str(caught.value)


def test_unreadable_or_shapeless_file_is_a_clear_error(tmp_path: Any) -> None:
    bad = tmp_path / "machines.yaml"
    bad.write_text("machines: [alpha, beta]\n")
    with pytest.raises(MachineCatalogError, match="machines: \\['alpha', 'beta'\\] is not of type 'object'"):
        load_catalog(str(bad))
    bad.write_text("machines: {alpha: {connection: [unclosed\n")
    with pytest.raises(MachineCatalogError, match="cannot read machine catalog"):
        load_catalog(str(bad))
    assert yaml.safe_load(DEFAULT_PATH.read_text())["machines"]
