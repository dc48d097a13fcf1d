"""Prometheus metrics and the access log: every request measured once, in front of the user's app.

prometheus_client's multiprocess mode sums what all workers record: each worker writes its values to
files in ``PROMETHEUS_MULTIPROC_DIR`` and any worker answers ``metrics_path`` with the sum of all of
them. The supervisor owns that directory: ``prepare_directory()`` before the first worker starts, and
``worker_exited(pid)`` for each worker that is gone, so its in-flight and WebSocket gauges stop counting
while its counters and histogram are kept.

prometheus_client picks its value store when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``; it
is therefore imported only inside functions, never by this module's import, so that a single worker that
runs in the supervisor's own process sees the directory too.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from djserve.probes import ASGIApp, Message, Receive, Scope, Send, probe_path

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

DIRECTORY = "PROMETHEUS_MULTIPROC_DIR"
# A method label for anything else keeps the series count bounded whatever clients send.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})

access_log = logging.getLogger("djserve.access")


def prepare_directory(environ: Any = os.environ) -> Path:
    """The supervisor's, before any worker starts: an empty directory for the workers' value files.

    A ``PROMETHEUS_MULTIPROC_DIR`` the user set is used and emptied of the last run's files; otherwise a
    fresh directory under the temporary directory (the container's tmpfs) is created and set.
    """
    if environ.get(DIRECTORY):
        path = Path(environ[DIRECTORY])
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="djserve-metrics-"))
        environ[DIRECTORY] = str(path)
        atexit.register(shutil.rmtree, path, ignore_errors=True)  # the supervisor's exit; workers never run it
    return path


def worker_exited(pid: int) -> None:
    """The supervisor's, for each worker that has exited: drop its live gauges, keep its counts.

    This is prometheus_client's ``multiprocess.mark_process_dead`` (its live gauge modes all start with
    ``live``), spelled out because importing prometheus_client would add about 14 MB to the supervisor,
    which stays under 30 MB (bench/findings.md).
    """
    directory = os.environ.get(DIRECTORY)
    if directory:
        for live in Path(directory).glob(f"gauge_live*_{pid}.db"):
            live.unlink(missing_ok=True)


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
