"""The urgentflow plugin app served on its own, for integration tests and benchmarks that need its
endpoints (e.g. completion notices) without the Airflow API server: mounted under ``/urgentflow`` as
the API server mounts it, on a free port of 127.0.0.1, with the notice Connection pointing at it."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator

NOTICE_ENV = "AIRFLOW_CONN_URGENTFLOW_NOTICE"


@contextlib.contextmanager
def serving_plugin_app(start_seconds: float = 30.0) -> Iterator[str]:
    """Serve the app until the block ends; yields its base URL. The notice Connection (this URL and a
    fresh secret) is set in the environment for the block and restored after it."""
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount

    from urgentflow_api.app import URL_PREFIX, create_app

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    before = os.environ.get(NOTICE_ENV)
    os.environ[NOTICE_ENV] = json.dumps(
        {"conn_type": "http", "host": url, "password": secrets.token_urlsafe(32)}
    )
    app = Starlette(routes=[Mount(URL_PREFIX, app=create_app())])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + start_seconds
        while not server.started:
            if time.monotonic() > deadline or not thread.is_alive():
                raise RuntimeError(f"the plugin app did not start within {start_seconds:g} s")
            time.sleep(0.05)
        yield url
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        if before is None:
            os.environ.pop(NOTICE_ENV, None)
        else:
            os.environ[NOTICE_ENV] = before
