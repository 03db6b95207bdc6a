"""YAML configuration files validated by a JSON schema (the machine catalog, the tool registry): one way
to read them and one way to say what is wrong, naming the entry and the field."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(source: Path, what: str, error: type[Exception]) -> Any:
    """The parsed file, or ``error("cannot read <what> <source>: ...")``."""
    try:
        return yaml.safe_load(source.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise error(f"cannot read {what} {source}: {exc}") from None


def check_schema(
    data: Any, schema: dict[str, Any], source: Path, section: str, noun: str, error: type[Exception]
) -> None:
    """Raise ``error`` for the first schema violation (in path order) of ``data``: ``<noun> '<name>':
    field a.b: <message>`` for an entry of the top-level mapping ``section``, else the file and path."""
    import jsonschema

    errors = sorted(
        jsonschema.Draft202012Validator(schema).iter_errors(data), key=lambda e: list(e.absolute_path)
    )
    if not errors:
        return
    path = list(errors[0].absolute_path)
    if len(path) >= 2 and path[0] == section:
        where = f"{noun} {path[1]!r}: field {'.'.join(str(p) for p in path[2:]) or '(entry)'}"
    else:
        where = f"{source}: {'.'.join(str(p) for p in path) or 'top level'}"
    raise error(f"{where}: {errors[0].message}")
