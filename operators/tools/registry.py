"""The tool registry (``include/tools.yaml``): which images orders may run, with their argv, the JSON
schema of their parameters and their resource limits. Loaded lazily, validated against ``SCHEMA``.

Errors name the tool and the field, e.g. ``tool 'stats': field limits.memory_mb: 0 is less than the
minimum of 16`` (a bad registry) or ``tool 'stats': field tool_params.bins: 0 is less than the minimum
of 1`` (a bad order).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from operators.yamlconfig import check_schema, read_yaml

DEFAULT_PATH = Path(__file__).resolve().parents[2] / "include" / "tools.yaml"
TOOL_NAME = "^[a-z][a-z0-9_-]{0,63}$"
IMAGE = "^[a-z0-9][a-z0-9._/-]{0,200}:[A-Za-z0-9._-]{1,128}$"  # a local name:tag, never a digest or URL

TOOL_SCHEMA: dict[str, Any] = {
    "type": "object",
    "additionalProperties": False,
    "required": ["image", "command", "params_schema", "limits"],
    "properties": {
        "image": {"type": "string", "pattern": IMAGE},
        "description": {"type": "string", "maxLength": 2000},
        "command": {
            "type": "array",
            "minItems": 1,
            "items": {"type": "string", "minLength": 1, "pattern": "^[^\\x00]*$"},
        },
        "params_schema": {
            "type": "object",
            "required": ["type"],
            "properties": {"type": {"const": "object"}},
        },
        "limits": {
            "type": "object",
            "additionalProperties": False,
            "required": ["cpus", "memory_mb"],
            "properties": {
                "cpus": {"type": "number", "exclusiveMinimum": 0, "maximum": 64},
                "memory_mb": {"type": "integer", "minimum": 16, "maximum": 262144},
            },
        },
    },
}

SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["tools"],
    "properties": {
        "tools": {
            "type": "object",
            "minProperties": 1,
            "propertyNames": {"pattern": TOOL_NAME},
            "additionalProperties": TOOL_SCHEMA,
        }
    },
}


class ToolRegistryError(ValueError):
    """A registry entry, a tool name or tool parameters that cannot be used; the message says which."""


def _first_error(validator: Any, data: Any) -> Any:
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    return errors[0] if errors else None


@dataclass(frozen=True)
class Tool:
    name: str
    image: str
    command: tuple[str, ...]
    params_schema: dict[str, Any]
    cpus: float
    memory_mb: int
    description: str = ""

    def check_params(self, params: Any) -> dict[str, Any]:
        """``params`` if they satisfy the tool's schema, else ToolRegistryError naming the field."""
        import jsonschema

        error = _first_error(jsonschema.Draft202012Validator(self.params_schema), params)
        if error is not None:
            field = ".".join(["tool_params", *(str(p) for p in error.absolute_path)])
            raise ToolRegistryError(f"tool {self.name!r}: field {field}: {error.message}")
        return dict(params)


def _tool(name: str, raw: dict[str, Any]) -> Tool:
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(raw["params_schema"])
    except jsonschema.SchemaError as exc:
        where = ".".join(["params_schema", *(str(p) for p in exc.absolute_path)])
        raise ToolRegistryError(f"tool {name!r}: field {where}: not a JSON schema: {exc.message}") from None
    return Tool(
        name=name,
        image=raw["image"],
        command=tuple(raw["command"]),
        params_schema=raw["params_schema"],
        cpus=float(raw["limits"]["cpus"]),
        memory_mb=int(raw["limits"]["memory_mb"]),
        description=raw.get("description", ""),
    )


def parse_registry(data: Any, source: Path = DEFAULT_PATH) -> dict[str, Tool]:
    check_schema(data, SCHEMA, source, "tools", "tool", ToolRegistryError)
    return {name: _tool(name, raw) for name, raw in data["tools"].items()}


@cache
def load_registry(path: str | None = None) -> dict[str, Tool]:
    source = Path(path or os.environ.get("URGENTFLOW_TOOLS") or DEFAULT_PATH)
    return parse_registry(read_yaml(source, "tool registry", ToolRegistryError), source)


def get_tool(name: str) -> Tool:
    tools = load_registry()
    if name not in tools:
        raise ToolRegistryError(f"unknown tool {name!r} (known: {', '.join(sorted(tools))})")
    return tools[name]
