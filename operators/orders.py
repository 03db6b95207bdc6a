"""Orders (after IVCAP): what an order must say, validated once, the same way for the REST API (422 with
field errors) and for the analytics_order DAG (its ``accept`` task): a tool of the registry, the
catalog datasets it reads, and parameters that satisfy the tool's schema."""

from __future__ import annotations

import secrets
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator

from operators.tools.registry import TOOL_NAME, get_tool

ORDER_ID_PATTERN = r"^ord-[0-9a-f]{12}$"
MAX_INPUTS = 100
DAG_ID = "analytics_order"


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tool: str = Field(pattern=TOOL_NAME, description="a tool of the registry (include/tools.yaml)")
    input_dataset_ids: list[StrictInt] = Field(
        min_length=1, max_length=MAX_INPUTS, description="catalog dataset ids the tool reads"
    )
    tool_params: dict[str, Any] = Field(
        default_factory=dict, description="the tool's parameters (its params_schema)"
    )

    @field_validator("tool")
    @classmethod
    def _registered(cls, tool: str) -> str:
        return get_tool(tool).name  # ToolRegistryError is a ValueError: a field error on "tool"

    @field_validator("input_dataset_ids")
    @classmethod
    def _positive_and_unique(cls, ids: list[int]) -> list[int]:
        if any(i < 1 for i in ids):
            raise ValueError("dataset ids are positive integers")
        if len(set(ids)) != len(ids):
            raise ValueError("each dataset id once")
        return ids

    @field_validator("tool_params")
    @classmethod
    def _fit_the_tool(cls, params: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        tool = info.data.get("tool")  # absent when the tool itself was refused
        return get_tool(tool).check_params(params) if tool else params


def new_order_id() -> str:
    return f"ord-{secrets.token_hex(6)}"


def run_id_of(order_id: str) -> str:
    """The DAG run of an order placed through the API: known before the run exists."""
    return f"order__{order_id}"
