"""JSON from callers, read as JSON says and no further: numbers are finite, nesting is bounded, and
numbers, booleans and strings are not turned into each other.

``loads`` parses a caller's document (the API's JSON bodies and pushed observations alike) and refuses
``NaN``, ``Infinity``, ``-Infinity``, numbers that overflow to infinity (``1e400``), malformed text and
nesting deeper than ``MAX_DEPTH`` with ``JSONInputError``, never with ``RecursionError`` or a value
that cannot be written back as JSON. ``Number`` (with pydantic's ``StrictInt`` and ``StrictBool``) is
the field type of every model a caller's JSON is validated against: ``true`` is not 1, ``"5"`` is not
5, 2.0 is not an integer, and a non-finite float given from Python is refused too. ``Number``'s JSON schema
(the DAG params are built from it) refuses NaN, the one non-finite value ``minimum``/``maximum``
cannot catch.
"""

from __future__ import annotations

import json
import math
from typing import Annotated, Any, NoReturn

from pydantic import AllowInfNan, Field, StrictFloat

MAX_DEPTH = 32
# NaN passes every comparison keyword of JSON schema (each error is raised only when a comparison
# holds); no finite number is both >= 1 and <= 0, NaN is: "not" that refuses NaN and nothing else.
NOT_NAN: dict[str, Any] = {"not": {"type": "number", "minimum": 1, "maximum": 0}}

Number = Annotated[StrictFloat, AllowInfNan(False), Field(json_schema_extra=NOT_NAN)]


class JSONInputError(ValueError):
    """A document that is not acceptable JSON; the message says why without repeating it."""


def _refuse_constant(name: str) -> NoReturn:
    raise JSONInputError(f"{name} is not a number in JSON: numbers must be finite")


def _finite(literal: str) -> float:
    value = float(literal)
    if math.isinf(value):
        raise JSONInputError(f"a number is out of range ({literal[:30]}): numbers must be finite")
    return value


def loads(document: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed ``document``; ``JSONInputError`` when it is not JSON, holds a non-finite number or is
    nested deeper than ``max_depth`` arrays/objects."""
    try:
        # a Python callback per float also lets other threads (an event loop) run during a long parse
        value = json.loads(document, parse_float=_finite, parse_constant=_refuse_constant)
    except JSONInputError:
        raise
    except RecursionError:
        raise JSONInputError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer of too many digits
        raise JSONInputError(f"not JSON: {exc}") from None
    if _deeper_than(value, max_depth):
        raise JSONInputError(f"nested deeper than {max_depth} levels")
    return value


def _deeper_than(value: Any, max_depth: int) -> bool:
    """Has ``value`` more than ``max_depth`` levels of arrays/objects? One level at a time, without
    recursion (``json.loads`` makes only lists and dicts)."""
    containers = [value] if type(value) in (list, dict) else []
    for _ in range(max_depth):
        containers = [
            child
            for node in containers
            for child in (node.values() if type(node) is dict else node)
            if type(child) in (list, dict)
        ]
        if not containers:
            return False
    return bool(containers)
