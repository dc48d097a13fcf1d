"""What a worker holds at once: HTTP requests in flight and open WebSockets.

The counts are per worker process. ``limit_concurrency`` (in ``djserve.serve.protocols``) and
``ws_max_connections`` (below) are enforced on them; ``requests_in_flight`` and ``websockets_open``
let other code of the worker read them.
"""

from __future__ import annotations

import logging

from djserve.app.probes import HEADERS
from djserve.app.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger("uvicorn.error")


class Count:
    """A number of things in progress in this worker's event loop (no lock: one thread counts).

    ``with count:`` holds one for the duration of the block.
    """

    def __init__(self) -> None:
        self.value = 0

    def __enter__(self) -> None:
        self.value += 1

    def __exit__(self, *exc_info: object) -> None:
        self.value -= 1


HTTP_REQUESTS = Count()
WEBSOCKETS = Count()


def requests_in_flight() -> int:
    """HTTP requests of this worker whose app is running (probes excluded)."""
    return HTTP_REQUESTS.value


def websockets_open() -> int:
    """WebSockets of this worker whose app is running: from the handshake until the app returns."""
    return WEBSOCKETS.value


class WebSocketLimit:
    """Refuses a WebSocket handshake with 503 once ``limit`` are open in this worker.

    uvicorn's ``limit_concurrency`` never applied to WebSockets, and counting them there refused
    every HTTP request, health included, once that many sockets were open; this is their own bound.
    """

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "websocket":
            await self.app(scope, receive, send)
        elif WEBSOCKETS.value >= self.limit:
            await self._refuse(scope, receive, send)
        else:
            with WEBSOCKETS:
                await self.app(scope, receive, send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        logger.warning("WebSocket refused: ws_max_connections (%d) reached.", self.limit)
        await receive()  # websocket.connect
        if "websocket.http.response" in scope.get("extensions", {}):
            body = b"Too many WebSockets\n"
            await send({"type": "websocket.http.response.start", "status": 503, "headers": HEADERS})
            await send({"type": "websocket.http.response.body", "body": body})
        else:  # a server without the extension answers a close before accept with 403
            await send({"type": "websocket.close", "code": 1013})
