"""Health and readiness, answered in front of the user's Django app, outside ALLOWED_HOSTS and middleware."""

from __future__ import annotations

import sys

from djserve.app.state import DRAINING
from djserve.app.types import ASGIApp, Message, Receive, Scope, Send
from djserve.handoff import WorkerConfig

HEADERS = [(b"content-type", b"text/plain; charset=utf-8"), (b"cache-control", b"no-store")]


def _closing(send: Send) -> Send:
    """A stopping worker asks keep-alive clients to reconnect elsewhere: see ``djserve.serve.draining``."""

    async def closing_send(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), (b"connection", b"close")]
        await send(message)

    return closing_send


def probe_paths(worker: WorkerConfig) -> frozenset[str]:
    """Paths answered outside Django: the probes, and the metrics when they are on."""
    paths = {worker.health_path, worker.ready_path}
    if worker.metrics:
        paths.add(worker.metrics_path)
    return frozenset(paths)


def _unprefixed(path: str, root_path: str) -> str:
    rest = path[len(root_path) :]
    return rest if root_path and path.startswith(root_path) and rest.startswith("/") else path


def probe_path(scope: Scope, paths: frozenset[str]) -> str | None:
    """The probe a request asks for, on the bare path or under ``root_path``, else None.

    uvicorn puts ``root_path`` in front of the path it received. A proxy that strips the prefix sends
    ``/-/health``, seen as ``/api/-/health``; a client that keeps it, and the image's healthcheck on the
    bare path, must be answered too, so the prefix is removed once and then once more if it is still there.
    """
    root_path = scope.get("root_path", "")
    path = _unprefixed(scope["path"], root_path)
    if path in paths:
        return path
    path = _unprefixed(path, root_path)
    return path if path in paths else None


def _django_ready() -> bool:
    apps = sys.modules.get("django.apps")
    return apps is None or bool(apps.apps.ready)


class Probes:
    """Answers the probe paths before Django sees the request: no ALLOWED_HOSTS, middleware or DB."""

    def __init__(self, app: ASGIApp, health_path: str, ready_path: str) -> None:
        self.app = app
        self.health_path = health_path
        self.ready_path = ready_path
        self.paths = frozenset({health_path, ready_path})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if DRAINING.is_set():
            send = _closing(send)
        path = probe_path(scope, self.paths)
        if path == self.health_path:
            await self._answer(send, 200, b"ok\n")
        elif path == self.ready_path:
            if DRAINING.is_set():
                await self._answer(send, 503, b"stopping\n")
            elif _django_ready():
                await self._answer(send, 200, b"ready\n")
            else:
                await self._answer(send, 503, b"loading\n")
        else:
            await self.app(scope, receive, send)

    @staticmethod
    async def _answer(send: Send, status: int, body: bytes) -> None:
        await send({"type": "http.response.start", "status": status, "headers": HEADERS})
        await send({"type": "http.response.body", "body": body})
