"""The ASGI app uvicorn runs in every worker (its app factory): the user's Django app behind djserve's.

uvicorn starts workers in fresh interpreters, so the resolved settings they need travel in the
environment under the kit's own variable names. The same names make ``djserve command`` reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from djserve import logs
from djserve.capacity import WebSocketLimit
from djserve.discovery import load_app
from djserve.probes import ASGIApp, Probes

FACTORY = "djserve.worker:create"
# Resolved settings handed to the workers: (environment variable, setting name).
HANDOFF = (
    ("DJSERVE_APP", "app"),
    ("DJSERVE_INTERFACE", "interface"),
    ("DJSERVE_PRESET", "preset"),
    ("DJSERVE_HEALTH_PATH", "health_path"),
    ("DJSERVE_READY_PATH", "ready_path"),
    ("DJSERVE_THREADS", "threads"),
    # Read by djserve.protocols in every worker.
    ("DJSERVE_HEADER_TIMEOUT", "header_timeout"),
    ("DJSERVE_MAX_HEADER_BYTES", "max_header_bytes"),
    ("DJSERVE_MAX_HEADERS", "max_headers"),
    ("DJSERVE_MAX_BODY_BYTES", "max_body_bytes"),
    ("DJSERVE_WS_MAX_CONNECTIONS", "ws_max_connections"),
    ("DJSERVE_METRICS", "metrics"),
    ("DJSERVE_METRICS_PATH", "metrics_path"),
    ("DJSERVE_LOG_FORMAT", "log_format"),
    ("UVICORN_FACTORY", "factory"),
)


def _interface_app(interface: str, app: ASGIApp, environ: Mapping[str, str]) -> ASGIApp:
    """Django's own app, made the ASGI app uvicorn serves for the configured interface."""
    if interface == "wsgi":
        from a2wsgi import WSGIMiddleware

        return WSGIMiddleware(app, workers=int(environ["DJSERVE_THREADS"]))  # type: ignore[arg-type,return-value]
    return app


def create(environ: Mapping[str, str] = os.environ) -> Probes:
    """uvicorn's app factory: load the user's app as the parent resolved it."""
    interface = environ["DJSERVE_INTERFACE"]
    app = load_app(environ["DJSERVE_APP"], interface, factory=environ.get("UVICORN_FACTORY") == "true")
    logs.for_worker(environ.get("DJSERVE_LOG_FORMAT", "text"))
    app = _interface_app(interface, app, environ)
    app = WebSocketLimit(app, int(environ["DJSERVE_WS_MAX_CONNECTIONS"]))
    return Probes(app, environ["DJSERVE_HEALTH_PATH"], environ["DJSERVE_READY_PATH"])
