"""Prometheus metrics and the access log: every request measured once, in front of the user's app.

prometheus_client's multiprocess mode sums what all workers record: each worker writes its values to
files in ``PROMETHEUS_MULTIPROC_DIR`` and any worker answers ``metrics_path`` with the sum of all of
them. The serving process owns that directory (``djserve.serve.metrics_dir``).

prometheus_client picks its value store when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``; it
is therefore imported only inside functions, never by this module's import, so that a single worker that
runs in the supervisor's own process sees the directory too.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from djserve.app.probes import probe_path
from djserve.app.types import ASGIApp, Message, Receive, Scope, Send
from djserve.defaults import METRICS_DIRECTORY_VARIABLE as DIRECTORY

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

# A method label for anything else keeps the series count bounded whatever clients send.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})

access_log = logging.getLogger("djserve.access")


@dataclass(frozen=True)
class Instruments:
    requests: Counter
    duration: Histogram
    in_flight: Gauge
    websockets: Gauge
    worker_starts: Counter


@cache
def instruments() -> Instruments:
    from prometheus_client import Counter, Gauge, Histogram

    return Instruments(
        requests=Counter("djserve_requests", "HTTP requests answered, probes excluded.", ["method", "status"]),
        duration=Histogram("djserve_request_duration_seconds", "Time from request to the end of the response."),
        in_flight=Gauge("djserve_requests_in_flight", "HTTP requests being answered.", multiprocess_mode="livesum"),
        websockets=Gauge("djserve_websockets_open", "Open WebSocket connections.", multiprocess_mode="livesum"),
        worker_starts=Counter("djserve_worker_starts", "Workers started."),
    )


def exposition() -> tuple[bytes, str]:
    """The sum over every worker's files (or this process's values without the supervisor's directory)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    registry = REGISTRY
    if os.environ.get(DIRECTORY):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST


class Observed:
    """Measures every request below the probes, answers ``metrics_path``, and writes the access log line.

    ``metrics_path`` None: no metrics (the path goes to Django). ``log_access``: one ``djserve.access``
    record per HTTP request, with its duration, in place of uvicorn's.
    """

    def __init__(self, app: ASGIApp, *, metrics_path: str | None, log_access: bool) -> None:
        self.app = app
        self.metrics_path = metrics_path
        self.log_access = log_access
        self._paths = frozenset({metrics_path} if metrics_path else ())
        if metrics_path is not None:
            instruments().worker_starts.inc()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.metrics_path is not None:
            websockets = instruments().websockets
            websockets.inc()
            try:
                await self.app(scope, receive, send)
            finally:
                websockets.dec()
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # On the bare path and under root_path, as the probes are (the cheap suffix test comes first).
        path = scope["path"]
        if self.metrics_path and path.endswith(self.metrics_path) and probe_path(scope, self._paths) is not None:
            await self._answer_metrics(send)
            return
        await self._measured(scope, receive, send)

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500  # what uvicorn answers for an app that raises or never starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        measured = self.metrics_path is not None
        if measured:
            instruments().in_flight.inc()
        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            if measured:
                self._record(scope, status, seconds)
            if self.log_access:
                _log_access(scope, status, seconds)

    @staticmethod
    def _record(scope: Scope, status: int, seconds: float) -> None:
        found = instruments()
        found.in_flight.dec()
        method = scope["method"] if scope["method"] in METHODS else "other"
        found.requests.labels(method=method, status=str(status)).inc()
        found.duration.observe(seconds)

    @staticmethod
    async def _answer_metrics(send: Send) -> None:
        body, content_type = exposition()
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": scope["path"],  # without the query string, which may carry tokens
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "client": f"{client[0]}:{client[1]}" if client else None,
    }
    access_log.info("%s %s %d %.1fms", fields["method"], fields["path"], status, fields["duration_ms"], extra=fields)
