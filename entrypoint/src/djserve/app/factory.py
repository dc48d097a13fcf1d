"""The ASGI app uvicorn runs in every worker (its app factory): the user's Django app behind djserve's.

The stack, outermost first: probes, the WebSocket limit, metrics and the access log, static files,
then the project's app for the configured interface on the worker's pool of threads. Its configuration
is the serving process's hand-off (``djserve.handoff.WorkerConfig``), read from the environment.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from djserve import logs
from djserve.app.capacity import WebSocketLimit
from djserve.app.probes import Probes
from djserve.app.threads import PooledThreads, PoolMetrics, ThreadPool
from djserve.app.types import ASGIApp
from djserve.handoff import WorkerConfig
from djserve.project import load_app


def load_apps(worker: WorkerConfig) -> tuple[Callable[..., Any], Callable[..., Any] | None]:
    """The user's app for the configured interface and, in hybrid mode, its WSGI side, imported.

    Every worker loads them here; with ``preload`` the preloaded process does first, once, and the workers
    forked from it find the modules imported (``djserve.preloaded``).
    """
    if worker.app is None:
        raise RuntimeError(f"no app to serve: set {WorkerConfig.variable('app')}")
    # In hybrid mode the configured app is the ASGI side: async views and WebSockets.
    app = load_app(worker.app, "wsgi" if worker.interface == "wsgi" else "asgi", factory=worker.factory)
    if worker.interface != "hybrid":
        return app, None
    if worker.wsgi_app is None:
        raise RuntimeError(f"interface hybrid needs its WSGI app: set {WorkerConfig.variable('wsgi_app')}")
    return app, load_app(worker.wsgi_app, "wsgi")


def _interface_app(worker: WorkerConfig) -> ASGIApp:
    """The user's Django app, served for the configured interface on one pool of ``threads`` per worker."""
    from djserve.app.wsgi import WSGIBridge

    app, wsgi_app = load_apps(worker)
    pool = ThreadPool(worker.threads, _thread_metrics(worker))
    if worker.interface == "wsgi":
        return WSGIBridge(app, pool, max_body_bytes=worker.max_body_bytes)
    asgi = PooledThreads(app, pool)
    if wsgi_app is None:
        return asgi
    from djserve.app.hybrid import Hybrid

    return Hybrid(WSGIBridge(wsgi_app, pool, max_body_bytes=worker.max_body_bytes), asgi)


def _thread_metrics(worker: WorkerConfig) -> PoolMetrics | None:
    if not worker.metrics:
        return None
    from djserve.app.observe import tallies

    return tallies()


def create(environ: Mapping[str, str] = os.environ) -> Probes:
    """uvicorn's app factory: load the user's app as the serving process resolved it."""
    worker = WorkerConfig.from_environ(environ)
    app = _interface_app(worker)
    logs.for_worker(worker.log_format)
    if worker.serve_static:
        from djserve.app import static

        app = static.wrap(app)
    # A refused WebSocket handshake never reaches the metrics' count of open ones.
    app = WebSocketLimit(_observed(app, worker), worker.ws_max_connections)
    return Probes(app, worker.health_path, worker.ready_path)


def _observed(app: ASGIApp, worker: WorkerConfig) -> ASGIApp:
    """Metrics and the access log with durations, below the probes (which neither counts nor logs)."""
    metrics_path = worker.metrics_path if worker.metrics else None
    # In JSON mode djserve writes the access line (uvicorn's has no duration); text keeps uvicorn's own.
    log_access = worker.access_log and worker.log_format == "json"
    if metrics_path is None and not log_access:
        return app
    from djserve.app.observe import Observed

    return Observed(app, metrics_path=metrics_path, log_access=log_access)
