"""An order is validated the same way for the API and the DAG: registered tool, dataset ids, parameters
that fit the tool (field errors name the field)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from operators.orders import ORDER_ID_PATTERN, OrderRequest, new_order_id, run_id_of


def errors(**body: Any) -> dict[str, str]:
    with pytest.raises(ValidationError) as caught:
        OrderRequest(**body)
    return {".".join(str(p) for p in e["loc"]): e["msg"] for e in caught.value.errors()}


def test_a_good_order() -> None:
    order = OrderRequest(tool="stats", input_dataset_ids=[3, 1], tool_params={"bins": 4, "columns": ["t"]})
    assert order.input_dataset_ids == [3, 1] and order.tool_params == {"bins": 4, "columns": ["t"]}
    assert OrderRequest(tool="stats", input_dataset_ids=[1]).tool_params == {}


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"tool": "nope"}, "tool", "unknown tool 'nope' (known: stats)"),
        ({"tool": "Stats; rm -rf /"}, "tool", "String should match pattern"),
        ({"input_dataset_ids": []}, "input_dataset_ids", "at least 1 item"),
        ({"input_dataset_ids": [1, 1]}, "input_dataset_ids", "each dataset id once"),
        ({"input_dataset_ids": [0]}, "input_dataset_ids", "positive"),
        ({"input_dataset_ids": ["x"]}, "input_dataset_ids.0", "valid integer"),
        (
            {"tool_params": {"bins": 0}},
            "tool_params",
            "tool 'stats': field tool_params.bins: 0 is less than the minimum of 1",
        ),
        (
            {"tool_params": {"columns": "t"}},
            "tool_params",
            "tool 'stats': field tool_params.columns: 't' is not of type 'array'",
        ),
        ({"image": "evil:1"}, "image", "Extra inputs are not permitted"),
    ],
)
def test_field_errors(body: dict[str, Any], field: str, message: str) -> None:
    found = errors(**{"tool": "stats", "input_dataset_ids": [1], **body})
    assert field in found and message in found[field], found


def test_an_unknown_tool_does_not_also_complain_about_its_params() -> None:
    assert set(errors(tool="nope", input_dataset_ids=[1], tool_params={"x": 1})) == {"tool"}


def test_ids() -> None:
    import re

    order_id = new_order_id()
    assert re.match(ORDER_ID_PATTERN, order_id) and order_id != new_order_id()
    assert run_id_of(order_id) == f"order__{order_id}"
