"""What can be pushed for an incident: weather and perimeters are validated against the incident."""

from __future__ import annotations

import json

import pytest

from operators.incidents import ObservationError, WildfireIncident, parse_observation

INCIDENT = WildfireIncident.model_validate(
    {
        "name": "unit",
        "ignition": {"lat": 37.30, "lon": -8.55},
        "region": {"min_lon": -8.65, "min_lat": 37.22, "max_lon": -8.45, "max_lat": 37.38},
        "weather": {"wind_speed_ms": 3, "wind_direction_deg": 10, "fuel_moisture": 0.1},
    }
)
RING = [[-8.56, 37.29], [-8.54, 37.29], [-8.54, 37.31], [-8.56, 37.29]]


def test_weather_update_is_normalised() -> None:
    body = b'{"wind_speed_ms": 5, "wind_direction_deg": 90, "fuel_moisture": 0.05}'
    assert parse_observation("weather", body, INCIDENT) == {
        "weather": {"wind_speed_ms": 5.0, "wind_direction_deg": 90.0, "fuel_moisture": 0.05}
    }


@pytest.mark.parametrize(
    "document",
    [
        {"type": "Polygon", "coordinates": [RING]},
        {
            "type": "Feature",
            "properties": {"by": "drone"},
            "geometry": {"type": "Polygon", "coordinates": [RING]},
        },
    ],
)
def test_perimeter_as_polygon_or_feature(document: dict) -> None:
    change = parse_observation("perimeter", json.dumps(document).encode(), INCIDENT)
    assert change == {"perimeter": {"type": "Polygon", "coordinates": [RING]}}


def test_a_file_changes_nothing() -> None:
    assert parse_observation("file", b"\x00\x01 any bytes", INCIDENT) is None


@pytest.mark.parametrize(
    ("kind", "body", "message"),
    [
        ("weather", b"{", "must be JSON"),
        ("weather", b"\xff\xfe", "must be JSON"),
        ("weather", b'{"wind_speed_ms": 99, "wind_direction_deg": 0, "fuel_moisture": 0}', "wind_speed_ms"),
        ("weather", b'{"wind_speed_ms": 1, "wind_direction_deg": 0}', "fuel_moisture: Field required"),
        ("perimeter", json.dumps({"type": "Polygon", "coordinates": [RING[:3]]}).encode(), "must be closed"),
        ("perimeter", json.dumps({"type": "Point", "coordinates": [0, 0]}).encode(), "type"),
        (
            "perimeter",
            json.dumps({"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]}).encode(),
            "perimeter must lie inside region",
        ),
        (
            "perimeter",
            json.dumps({"type": "Polygon", "coordinates": [[[0, 0]] * 20_001]}).encode(),
            "more than 20000 positions",
        ),
        ("radar", b"{}", "kind must be one of"),
    ],
)
def test_bad_observations_say_why(kind: str, body: bytes, message: str) -> None:
    with pytest.raises(ObservationError, match=None) as caught:
        parse_observation(kind, body, INCIDENT)
    assert message in str(caught.value)
