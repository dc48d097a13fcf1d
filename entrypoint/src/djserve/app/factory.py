"""The ASGI app uvicorn runs in every worker (its app factory): the user's Django app behind djserve's.

uvicorn starts workers in fresh interpreters, so the resolved settings they need travel in the
environment under the kit's own variable names. The same names make ``djserve command`` reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from djserve import logs
from djserve.capacity import WebSocketLimit
from djserve.discovery import hybrid_wsgi_app, load_app
from djserve.probes import ASGIApp, Probes
from djserve.threads import PooledThreads, ThreadPool

FACTORY = "djserve.worker:create"
# Resolved settings handed to the workers: (environment variable, setting name).
HANDOFF = (
    ("DJSERVE_APP", "app"),
    ("DJSERVE_INTERFACE", "interface"),
    ("DJSERVE_PRESET", "preset"),
    ("DJSERVE_HEALTH_PATH", "health_path"),
    ("DJSERVE_READY_PATH", "ready_path"),
    ("DJSERVE_THREADS", "threads"),
    # The header deadline and limits, read by djserve.protocols in every worker.
    ("DJSERVE_HEADER_TIMEOUT", "header_timeout"),
    ("DJSERVE_MAX_HEADER_BYTES", "max_header_bytes"),
    ("DJSERVE_MAX_HEADERS", "max_headers"),
    ("DJSERVE_MAX_BODY_BYTES", "max_body_bytes"),
    ("DJSERVE_WS_MAX_CONNECTIONS", "ws_max_connections"),
    ("DJSERVE_LOG_FORMAT", "log_format"),
    ("DJSERVE_SERVE_STATIC", "serve_static"),
    ("DJSERVE_METRICS", "metrics"),
    ("DJSERVE_METRICS_PATH", "metrics_path"),
    ("UVICORN_ACCESS_LOG", "access_log"),
    ("UVICORN_FACTORY", "factory"),
)


def _interface_app(interface: str, environ: Mapping[str, str]) -> ASGIApp:
    """The user's Django app, served for the configured interface on one pool of ``threads`` per worker."""
    # Imported here: the parent imports this module for HANDOFF, and needs neither.
    from djserve.wsgi import WSGIBridge

    pool = ThreadPool(int(environ["DJSERVE_THREADS"]))
    factory = environ.get("UVICORN_FACTORY") == "true"
    max_body_bytes = int(environ["DJSERVE_MAX_BODY_BYTES"])
    if interface == "wsgi":
        return WSGIBridge(
            load_app(environ["DJSERVE_APP"], "wsgi", factory=factory), pool, max_body_bytes=max_body_bytes
        )
    # In hybrid mode the configured app is the ASGI side: async views and WebSockets.
    asgi = PooledThreads(load_app(environ["DJSERVE_APP"], "asgi", factory=factory), pool)
    if interface == "asgi":
        return asgi
    from djserve.hybrid import Hybrid

    spec, _ = hybrid_wsgi_app(environ["DJANGO_SETTINGS_MODULE"])
    return Hybrid(WSGIBridge(load_app(spec, "wsgi"), pool, max_body_bytes=max_body_bytes), asgi)


def create(environ: Mapping[str, str] = os.environ) -> Probes:
    """uvicorn's app factory: load the user's app as the parent resolved it."""
    app = _interface_app(environ["DJSERVE_INTERFACE"], environ)
    logs.for_worker(environ.get("DJSERVE_LOG_FORMAT", "text"))
    if environ.get("DJSERVE_SERVE_STATIC") == "true":
        from djserve import static

        app = static.wrap(app)
    # A refused WebSocket handshake never reaches the metrics' count of open ones.
    app = WebSocketLimit(_observed(app, environ), int(environ["DJSERVE_WS_MAX_CONNECTIONS"]))
    return Probes(app, environ["DJSERVE_HEALTH_PATH"], environ["DJSERVE_READY_PATH"])


def _observed(app: ASGIApp, environ: Mapping[str, str]) -> ASGIApp:
    """Metrics and the access log with durations, below the probes (which neither counts nor logs)."""
    metrics_path = environ.get("DJSERVE_METRICS_PATH") if environ.get("DJSERVE_METRICS") == "true" else None
    # In JSON mode djserve writes the access line (uvicorn's has no duration); text keeps uvicorn's own.
    log_access = environ.get("UVICORN_ACCESS_LOG") == "true" and environ.get("DJSERVE_LOG_FORMAT") == "json"
    if metrics_path is None and not log_access:
        return app
    from djserve.metrics import Observed

    return Observed(app, metrics_path=metrics_path, log_access=log_access)
