"""Graceful shutdown that does not drop requests already on their way.

uvicorn's ``Server.shutdown`` closes every connection that is not in the middle of a request at that
instant. A connection a worker accepted just before it stopped listening, or a keep-alive connection
whose next request is still in flight, is closed unanswered: when ``limit-max-requests`` recycles a
worker under load, clients get "connection closed without response" for requests they sent correctly.

So a stopping worker first stops listening and marks itself as draining: from then on every response
carries ``Connection: close`` (see ``djserve.app.probes``), which tells keep-alive clients to reconnect,
to a worker that is not stopping. Connections get a short while to deliver a request and be answered
that way; only then does uvicorn's own shutdown take over (``djserve.serve.server.Server.shutdown``).
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from djserve.app.state import DRAINING

if TYPE_CHECKING:
    from uvicorn.server import Server

DRAIN_SECONDS = 0.5


async def drain(server: Server) -> None:
    """Stop listening and let open connections deliver what they send, answered with close."""
    DRAINING.set()
    for listener in server.servers:
        listener.close()
    # uvicorn 0.54 internals: `server_state.connections` holds the protocol instances, and an HTTP
    # protocol's `cycle` is its request in progress. WebSocket protocols have no `cycle`; uvicorn's
    # shutdown closes them as usual.
    http = [c for c in server.server_state.connections if hasattr(c, "cycle")]
    for connection in http:
        if connection.cycle is not None and not connection.cycle.response_complete:
            connection.shutdown()  # uvicorn's: finish this response with Connection: close
    deadline = time.monotonic() + DRAIN_SECONDS
    while time.monotonic() < deadline and any(c in server.server_state.connections for c in http):
        await asyncio.sleep(0.01)
