"""The threads that run Django's sync code: a pool of single-thread executors, one bound per worker.

Django keeps its database connections per thread. Under plain ASGI, asgiref starts a new thread for
every request's sync work (each request enters a fresh ``ThreadSensitiveContext``), so every request
opens a connection and ``CONN_MAX_AGE`` leaks them. Checking one of ``threads`` long-lived threads out
of this pool per request reuses threads, and so connections, and caps them at ``threads`` a worker.
Requests wait for a free thread instead of creating one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager

from asgiref.sync import ThreadSensitiveContext

from djserve.probes import ASGIApp, Receive, Scope, Send


class ExecutorPool:
    """``size`` single-thread executors, checked out one per request and returned when it ends."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"djserve-{n}") for n in range(size)]
        self._free: asyncio.Queue[ThreadPoolExecutor] | None = None

    def _queue(self) -> asyncio.Queue[ThreadPoolExecutor]:
        # Created on first use, inside the worker's running loop.
        if self._free is None:
            self._free = asyncio.Queue()
            for executor in self._executors:
                self._free.put_nowait(executor)
        return self._free

    @asynccontextmanager
    async def checkout(self) -> AsyncIterator[ThreadPoolExecutor]:
        free = self._queue()
        executor = await free.get()
        try:
            yield executor
        finally:
            free.put_nowait(executor)

    def shutdown(self) -> None:
        for executor in self._executors:
            executor.shutdown(wait=False)


class PooledThreads:
    """ASGI middleware: each HTTP request's thread-sensitive sync code runs on one executor of the pool.

    Django's ``ASGIHandler`` enters its own ``ThreadSensitiveContext`` per request; inside this one, that
    is a no-op, so the view, the middleware and the request signals share the checked-out thread and its
    DB connection. WebSocket and lifespan scopes pass through: a socket would hold a thread for hours.
    """

    def __init__(self, app: ASGIApp, pool: ExecutorPool) -> None:
        self.app = app
        self.pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        async with self.pool.checkout() as executor, ThreadSensitiveContext(executor=executor):
            await self.app(scope, receive, send)
