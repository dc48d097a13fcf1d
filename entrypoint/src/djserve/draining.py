"""Graceful shutdown that does not drop requests already on their way.

uvicorn's ``Server.shutdown`` closes every connection that has no request cycle yet. A connection a
worker accepted just before it stopped listening, whose request bytes are still in flight, is closed
unanswered: when ``limit-max-requests`` recycles a worker under load, a few clients get "connection
closed without response" for requests they sent correctly. Stopping to listen first, then giving such
connections a moment to deliver their request, lets the normal graceful path answer them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from uvicorn.server import Server

DRAIN_SECONDS = 0.5


def _unread(connection: Any) -> bool:
    # HTTP protocols have a `cycle` once a request has begun; WebSocket protocols have none at all.
    return hasattr(connection, "cycle") and connection.cycle is None


def install() -> None:
    """Wrap uvicorn's shutdown once per process (the worker's Server already exists when the app loads)."""
    original = Server.shutdown
    if getattr(original, "djserve_draining", False):
        return

    async def shutdown(self: Server, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline and any(_unread(c) for c in self.server_state.connections):
            await asyncio.sleep(0.01)
        await original(self, sockets)

    shutdown.djserve_draining = True  # type: ignore[attr-defined]
    Server.shutdown = shutdown  # type: ignore[method-assign]
