"""Graceful shutdown that does not drop requests already on their way.

uvicorn's ``Server.shutdown`` closes every connection that is not in the middle of a request at that
instant. A connection a worker accepted just before it stopped listening, or a keep-alive connection
whose next request is still in flight, is closed unanswered: when ``limit-max-requests`` recycles a
worker under load, clients get "connection closed without response" for requests they sent correctly.

So djserve first stops listening, then for a short while lets idle connections deliver what they
send, answering each request in progress with ``Connection: close`` (uvicorn's own per-connection
shutdown), and only then hands over to uvicorn's shutdown.
"""

from __future__ import annotations

import asyncio
import socket
import time
from typing import Any

from uvicorn.server import Server

DRAIN_SECONDS = 0.5


def _idle(connection: Any) -> bool:
    """Whether an HTTP connection has no request in progress; answers each one it has with close."""
    cycle = connection.cycle
    if cycle is None or cycle.response_complete:
        return True
    connection.shutdown()  # uvicorn's: finish this response, then close the connection
    return False


def install() -> None:
    """Wrap uvicorn's shutdown once per process (the worker's Server already exists when the app loads)."""
    original = Server.shutdown
    if getattr(original, "djserve_draining", False):
        return

    async def shutdown(self: Server, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        deadline = time.monotonic() + DRAIN_SECONDS
        while time.monotonic() < deadline:
            # WebSocket protocols have no `cycle`; uvicorn's shutdown closes them as usual.
            http = [c for c in self.server_state.connections if hasattr(c, "cycle")]
            if not any([_idle(c) for c in http]):
                break
            await asyncio.sleep(0.01)
        await original(self, sockets)

    shutdown.djserve_draining = True  # type: ignore[attr-defined]
    Server.shutdown = shutdown  # type: ignore[method-assign]
