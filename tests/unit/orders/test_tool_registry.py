"""The tool registry: the shipped one loads; a bad entry or bad order parameters fail naming the tool
and the field."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

from operators.tools.registry import DEFAULT_PATH, ToolRegistryError, get_tool, load_registry, parse_registry

GOOD: dict[str, Any] = {
    "tools": {
        "stats": {
            "image": "urgentflow/tools-stats:1",
            "command": ["python3", "/opt/tool/stats.py", "/order/in/order.json", "/order/out"],
            "params_schema": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"bins": {"type": "integer", "minimum": 1}},
            },
            "limits": {"cpus": 1.0, "memory_mb": 256},
        }
    }
}


def with_change(path: list[str], value: Any) -> dict[str, Any]:
    data = copy.deepcopy(GOOD)
    target = data
    for part in path[:-1]:
        target = target[part]
    target[path[-1]] = value
    return data


def test_the_shipped_registry_loads_and_its_images_are_built_by_the_test_bed() -> None:
    from operators.services.images import IMAGES, IMAGES_DIR

    tools = load_registry(str(DEFAULT_PATH))
    assert "stats" in tools
    for tool in tools.values():
        assert tool.image in IMAGES.values(), (
            f"{tool.name}: {tool.image} is not built by operators/services/images.py"
        )
        name = next(n for n, tag in IMAGES.items() if tag == tool.image)
        assert (IMAGES_DIR / name / "Dockerfile").is_file()
    stats = get_tool("stats")
    assert stats.command[0] == "python3" and stats.memory_mb == 256


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (
            ["tools", "stats", "command"],
            "python3 /opt/tool/stats.py",
            "tool 'stats': field command: .* is not of type 'array'",
        ),
        (["tools", "stats", "command"], [], "tool 'stats': field command: .* should be non-empty"),
        (
            ["tools", "stats", "limits", "memory_mb"],
            0,
            "tool 'stats': field limits.memory_mb: 0 is less than the minimum of 16",
        ),
        (
            ["tools", "stats", "image"],
            "https://evil.example/x:1",
            "tool 'stats': field image: .* does not match",
        ),
        (
            ["tools", "stats", "params_schema", "type"],
            "array",
            "tool 'stats': field params_schema.type: 'object' was expected",
        ),
        (
            ["tools", "stats", "params_schema", "properties", "bins", "minimum"],
            "one",
            "tool 'stats': field params_schema.properties.bins.minimum: not a JSON schema",
        ),
        (["tools", "stats", "shell"], True, "tool 'stats': field \\(entry\\): Additional properties"),
    ],
)
def test_a_bad_entry_names_the_tool_and_the_field(path: list[str], value: Any, message: str) -> None:
    with pytest.raises(ToolRegistryError, match=message):
        parse_registry(with_change(path, value))


def test_a_bad_tool_name_and_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ToolRegistryError, match="tools"):
        parse_registry({"tools": {"Bad Name": GOOD["tools"]["stats"]}})
    broken = tmp_path / "tools.yaml"
    broken.write_text("tools: [unclosed")
    with pytest.raises(ToolRegistryError, match=f"cannot read tool registry {broken}"):
        load_registry(str(broken))


def test_order_params_are_checked_against_the_tool_schema(tmp_path: Path) -> None:
    source = tmp_path / "tools.yaml"
    source.write_text(yaml.safe_dump(GOOD))
    tool = load_registry(str(source))["stats"]
    assert tool.check_params({"bins": 5}) == {"bins": 5}
    with pytest.raises(
        ToolRegistryError, match=r"tool 'stats': field tool_params.bins: 0 is less than the minimum of 1"
    ):
        tool.check_params({"bins": 0})
    with pytest.raises(ToolRegistryError, match=r"tool 'stats': field tool_params: .*'extra' was unexpected"):
        tool.check_params({"extra": 1})


def test_unknown_tool_lists_the_known_ones() -> None:
    with pytest.raises(ToolRegistryError, match=r"unknown tool 'nope' \(known: stats\)"):
        get_tool("nope")
