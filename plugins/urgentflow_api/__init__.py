"""urgentflow's REST API and UI pages, served by the Airflow API server as a plugin app (``/urgentflow``).

Every endpoint authenticates with Airflow's own token (``Authorization: Bearer``, or the UI's session
cookie) and checks Airflow permissions through the auth manager: a plugin app gets no auth by itself.
"""
