"""docker-compose.yaml is structurally sound (it cannot be pulled and run here: no image registry)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

COMPOSE = Path(__file__).resolve().parents[2] / "docker-compose.yaml"


def test_compose_has_the_airflow_components_and_no_secrets() -> None:
    text = COMPOSE.read_text()
    services = yaml.safe_load(text)["services"]
    for name in (
        "postgres",
        "minio",
        "airflow-init",
        "api-server",
        "scheduler",
        "dag-processor",
        "triggerer",
    ):
        assert name in services, name
    for name in ("api-server", "scheduler", "dag-processor", "triggerer"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
        assert services[name]["image"].startswith("apache/airflow:3.3.2")
    # every password/secret is a required variable, none is written here
    for key, value in re.findall(r"^\s*(\w*(?:PASSWORD|SECRET)\w*):[ ]*(\S+)", text, re.M):
        assert value.startswith("${"), (key, value)
