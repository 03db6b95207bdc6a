"""Hostile JSON for the API's property-based tests (unit and e2e): a valid document with one value
replaced by raw text that ``json.dumps`` would never write (``NaN``, ``1e400``, deep nesting), and
JSON-ish text of every kind. Hypothesis strategies and the helpers they are built from."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E999"]
MARK = "\x00replaced\x00"


def leaves(document: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every scalar in ``document``."""
    if isinstance(document, dict):
        return [leaf for key, value in document.items() for leaf in leaves(value, (*path, key))]
    if isinstance(document, list):
        return [leaf for i, value in enumerate(document) for leaf in leaves(value, (*path, i))]
    return [(path, document)]


def with_literal(document: Any, path: tuple[Any, ...], literal: str) -> str:
    """``document`` as JSON text with the value at ``path`` replaced by the raw ``literal`` (the whole
    document when ``path`` is empty)."""
    if not path:
        return literal
    copy = json.loads(json.dumps(document))
    *parents, last = path
    node = copy
    for step in parents:
        node = node[step]
    node[last] = MARK
    return json.dumps(copy).replace(json.dumps(MARK), literal)


def nesting(min_depth: int = 33, max_depth: int = 100_000) -> st.SearchStrategy[str]:
    """Arrays nested ``min_depth`` to ``max_depth`` deep, closed or left open."""
    return st.builds(
        lambda depth, closed: "[" * depth + ("]" * depth if closed else ""),
        st.integers(min_value=min_depth, max_value=max_depth),
        st.booleans(),
    )


def hostile_literals() -> st.SearchStrategy[str]:
    """What to put in place of one value: a non-finite number or deep nesting."""
    return st.sampled_from(NON_FINITE) | nesting()


def json_texts() -> st.SearchStrategy[str]:
    """JSON documents with non-finite numbers and nesting of any depth, as text."""
    scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=10)
    nested = st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=12,
    )
    return nested.map(json.dumps) | nesting(min_depth=30, max_depth=2000)


def bodies() -> st.SearchStrategy[bytes]:
    """Any body: JSON-ish text, plain text, bytes."""
    return json_texts().map(str.encode) | st.text(max_size=200).map(str.encode) | st.binary(max_size=200)


def hostile_variants(document: Any) -> st.SearchStrategy[bytes]:
    """``document`` with one of its values (or all of it) replaced by a non-finite number or deep nesting."""
    paths = [path for path, _ in leaves(document)] + [()]
    return st.builds(
        lambda path, literal: with_literal(document, path, literal).encode(),
        st.sampled_from(paths),
        hostile_literals(),
    )
