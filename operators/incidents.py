"""Incidents: what a wildfire report must say, validated once, the same way for the REST API (422 with
field errors) and for the DAG's params (the JSON schemas below)."""

from __future__ import annotations

import secrets
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"  # any printable text: it is shown, never executed


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Point(Strict):
    lat: float = Field(ge=-90, le=90)
    lon: float = Field(ge=-180, le=180)


class Region(Strict):
    min_lon: float = Field(ge=-180, le=180)
    min_lat: float = Field(ge=-90, le=90)
    max_lon: float = Field(ge=-180, le=180)
    max_lat: float = Field(ge=-90, le=90)

    @model_validator(mode="after")
    def _ordered_and_small(self) -> Region:
        if not (self.min_lon < self.max_lon and self.min_lat < self.max_lat):
            raise ValueError("region must have min_lon < max_lon and min_lat < max_lat")
        if self.max_lon - self.min_lon > 2 or self.max_lat - self.min_lat > 2:
            raise ValueError("region is at most 2 x 2 degrees")
        return self

    def contains(self, point: Point) -> bool:
        return self.min_lon <= point.lon <= self.max_lon and self.min_lat <= point.lat <= self.max_lat


class Weather(Strict):
    wind_speed_ms: float = Field(ge=0, le=60, description="wind speed, m/s")
    wind_direction_deg: float = Field(ge=0, lt=360, description="direction the wind blows from, degrees")
    fuel_moisture: float = Field(ge=0, le=1, description="dead fuel moisture, fraction")


class WildfireIncident(Strict):
    kind: Literal["wildfire"] = "wildfire"
    name: str = Field(pattern=NAME_PATTERN, description="a name people recognise")
    ignition: Point
    region: Region
    weather: Weather
    ensemble_size: int = Field(20, ge=1, le=200)
    deadline_minutes: int = Field(60, ge=5, le=1440, description="results are useless after this")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    updates: bool = Field(False, description="re-run the forecast when new observations arrive")

    @model_validator(mode="after")
    def _ignition_inside(self) -> WildfireIncident:
        if not self.region.contains(self.ignition):
            raise ValueError("ignition must lie inside region")
        return self


def new_incident_id() -> str:
    return f"inc-{secrets.token_hex(6)}"


def param_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A sub-model's JSON schema as keyword arguments for ``airflow.sdk.Param`` (self-contained)."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema
