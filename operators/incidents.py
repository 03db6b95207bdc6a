"""Incidents: what a wildfire report must say, validated once, the same way for the REST API (422 with
field errors) and for the DAG's params (the JSON schemas below); and the observations pushed for an
incident later (``POST /incidents/{id}/data``), checked by ``parse_observation`` at the API and again
by ``ingest_observation``."""

from __future__ import annotations

import re
import secrets
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationError, model_validator

from operators.jsoninput import JSONInputError, Number, loads

NAME_PATTERN = r"^[^\x00-\x1f\x7f]{1,200}$"  # any printable text: it is shown, never executed


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Point(Strict):
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)


class Region(Strict):
    min_lon: Number = Field(ge=-180, le=180)
    min_lat: Number = Field(ge=-90, le=90)
    max_lon: Number = Field(ge=-180, le=180)
    max_lat: Number = Field(ge=-90, le=90)

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
    wind_speed_ms: Number = Field(ge=0, le=60, description="wind speed, m/s")
    wind_direction_deg: Number = Field(ge=0, lt=360, description="direction the wind blows from, degrees")
    fuel_moisture: Number = Field(ge=0, le=1, description="dead fuel moisture, fraction")


Lon = Annotated[Number, Field(ge=-180, le=180)]
Lat = Annotated[Number, Field(ge=-90, le=90)]
MAX_PERIMETER_POSITIONS = 20_000


class Perimeter(Strict):
    """An observed fire perimeter: a GeoJSON Polygon of (lon, lat) positions, outer ring first, holes
    after; every ring closed (first position = last) with at least 4 positions."""

    type: Literal["Polygon"]
    coordinates: list[list[tuple[Lon, Lat]]] = Field(min_length=1, max_length=100)

    @model_validator(mode="after")
    def _closed_rings(self) -> Perimeter:
        if sum(len(ring) for ring in self.coordinates) > MAX_PERIMETER_POSITIONS:
            raise ValueError(f"perimeter has more than {MAX_PERIMETER_POSITIONS} positions")
        for i, ring in enumerate(self.coordinates):
            if len(ring) < 4 or ring[0] != ring[-1]:
                raise ValueError(f"ring {i} must be closed (first position = last) with at least 4 positions")
        return self

    def positions(self) -> list[tuple[float, float]]:
        return [p for ring in self.coordinates for p in ring]


class WildfireIncident(Strict):
    kind: Literal["wildfire"] = "wildfire"
    name: str = Field(pattern=NAME_PATTERN, description="a name people recognise")
    ignition: Point
    region: Region
    weather: Weather
    ensemble_size: StrictInt = Field(20, ge=1, le=200)
    deadline_minutes: StrictInt = Field(60, ge=5, le=1440, description="results are useless after this")
    seed: StrictInt = Field(0, ge=0, le=2**31 - 1)
    updates: StrictBool = Field(False, description="re-run the forecast when new observations arrive")
    perimeter: Perimeter | None = Field(None, description="observed fire perimeter: burning at the start")

    @model_validator(mode="after")
    def _ignition_inside(self) -> WildfireIncident:
        if not self.region.contains(self.ignition):
            raise ValueError("ignition must lie inside region")
        if self.perimeter is not None and not all(
            self.region.contains(Point(lon=lon, lat=lat)) for lon, lat in self.perimeter.positions()
        ):
            raise ValueError("perimeter must lie inside region")
        return self


INCIDENT_ID = re.compile(r"^inc-[0-9a-f]{12}$")
DAG_OF_KIND = {"wildfire": "wildfire_forecast", "study": "study_pipeline"}
"""The DAG that works an incident of each kind: its runs' states are the incident's status, and the right
to read (change) its runs is the right to read (cancel) the incident."""
INGEST_DAG_ID = "ingest_observation"
RunRole = Literal["incident", "ingest"]


def new_incident_id() -> str:
    return f"inc-{secrets.token_hex(6)}"


def run_role(kind: str, dag_id: str) -> RunRole | None:
    """How a run of ``dag_id`` belongs to an incident of ``kind``: ``incident`` (a run of the kind's own DAG:
    its state is the incident's status), ``ingest`` (observations applied to it: recorded, never its status),
    or None: any other DAG's run is not the incident's, whatever its conf says."""
    if dag_id == DAG_OF_KIND.get(kind):
        return "incident"
    if dag_id == INGEST_DAG_ID:
        return "ingest"
    return None


def param_schema(model: type[BaseModel]) -> dict[str, Any]:
    """A sub-model's JSON schema as keyword arguments for ``airflow.sdk.Param`` (self-contained)."""
    schema = model.model_json_schema()
    schema.pop("title", None)
    return schema


OBSERVATION_KINDS = ("weather", "perimeter", "file")
"""What can be pushed for an incident: a weather update (``Weather`` as JSON), an observed perimeter
(GeoJSON Polygon, or a Feature holding one) — both change the incident and re-run its forecast when
it asks for updates — or any other file (stored and catalogued only)."""


class ObservationError(ValueError):
    """A pushed observation that cannot be accepted; the message says why."""


def parse_observation(kind: str, body: bytes, incident: WildfireIncident) -> dict[str, Any] | None:
    """The change an observation makes to ``incident`` (``{"weather": ...}`` or ``{"perimeter": ...}``),
    None for a plain file; ``ObservationError`` when it is not acceptable."""
    if kind not in OBSERVATION_KINDS:
        raise ObservationError(f"kind must be one of {', '.join(OBSERVATION_KINDS)} (got {kind!r})")
    if kind == "file":
        return None
    try:
        document = loads(body)
    except JSONInputError as exc:
        raise ObservationError(f"a {kind} observation must be JSON: {exc}") from None
    if kind == "perimeter" and isinstance(document, dict) and document.get("type") == "Feature":
        document = document.get("geometry")
    try:
        if kind == "weather":
            return {"weather": Weather.model_validate(document).model_dump(mode="json")}
        perimeter = Perimeter.model_validate(document)
        updated = WildfireIncident.model_validate({**incident.model_dump(), "perimeter": perimeter})
    except ValidationError as exc:
        raise ObservationError(_errors(exc)) from None
    return {"perimeter": updated.model_dump(mode="json")["perimeter"]}


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors(include_url=False)
    )
