"""The ASGI app uvicorn runs in every worker (its app factory): the user's Django app behind djserve's.

uvicorn starts workers in fresh interpreters, so the resolved settings they need travel in the
environment under the kit's own variable names. The same names make ``djserve command`` reproducible.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from djserve import draining
from djserve.discovery import hybrid_wsgi_app, load_app
from djserve.probes import ASGIApp, Probes
from djserve.threads import ExecutorPool, PooledThreads

FACTORY = "djserve.worker:create"
# Resolved settings handed to the workers: (environment variable, setting name).
HANDOFF = (
    ("DJSERVE_APP", "app"),
    ("DJSERVE_INTERFACE", "interface"),
    ("DJSERVE_PRESET", "preset"),
    ("DJSERVE_HEALTH_PATH", "health_path"),
    ("DJSERVE_READY_PATH", "ready_path"),
    ("DJSERVE_THREADS", "threads"),
    ("DJSERVE_MAX_BODY_BYTES", "max_body_bytes"),
    ("DJSERVE_LOG_FORMAT", "log_format"),
    ("UVICORN_FACTORY", "factory"),
)


def _interface_app(interface: str, environ: Mapping[str, str]) -> ASGIApp:
    """The user's Django app, served for the configured interface on one pool of ``threads`` per worker."""
    # Imported here: the parent imports this module for HANDOFF, and needs neither.
    from djserve.wsgi import WSGIBridge

    pool = ExecutorPool(int(environ["DJSERVE_THREADS"]))
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
    draining.install()
    app = _interface_app(environ["DJSERVE_INTERFACE"], environ)
    if environ.get("DJSERVE_LOG_FORMAT") == "json":
        from djserve.logs import quiet_django_console

        quiet_django_console()
    return Probes(app, environ["DJSERVE_HEALTH_PATH"], environ["DJSERVE_READY_PATH"])
