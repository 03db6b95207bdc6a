"""The urgentflow Airflow plugin: our REST app and UI pages inside the Airflow API server."""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin
from urgentflow_listener import ExitHandler

from urgentflow_api.app import URL_PREFIX, create_app


class UrgentflowPlugin(AirflowPlugin):
    name = "urgentflow"
    listeners = [ExitHandler()]  # noqa: RUF012
    fastapi_apps = [{"app": create_app(), "url_prefix": URL_PREFIX, "name": "urgentflow API"}]  # noqa: RUF012
    external_views = [  # noqa: RUF012
        {
            "name": "Incidents",
            "href": f"{URL_PREFIX}/ui/incidents",
            "destination": "nav",
            "url_route": "incidents",
        },
        {
            "name": "Machines",
            "href": f"{URL_PREFIX}/ui/machines",
            "destination": "nav",
            "url_route": "machines",
        },
        {
            "name": "Services",
            "href": f"{URL_PREFIX}/ui/services",
            "destination": "nav",
            "url_route": "services",
        },
    ]
