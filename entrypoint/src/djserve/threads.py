"""The threads that run Django's sync code: a pool of single-thread executors, one bound per worker.

Django keeps its database connections per thread. Under plain ASGI, asgiref starts a new thread for
every request's sync work (each request enters a fresh ``ThreadSensitiveContext``), so every request
opens a connection and ``CONN_MAX_AGE`` leaks them. Checking one of ``threads`` long-lived threads out
of this pool per request reuses threads, and so connections, and caps them at ``threads`` a worker.
Requests wait for a free thread instead of creating one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType

from asgiref.sync import ThreadSensitiveContext

from djserve.probes import ASGIApp, Receive, Scope, Send


class ExecutorPool:
    """``size`` single-thread executors, checked out one per request and returned when it ends.

    Waiting requests get executors in arrival order. The checkout is a plain class over a deque, not an
    ``asynccontextmanager`` over an ``asyncio.Queue``: it is on every request's path, and a free
    executor is taken without suspending (``bench/findings.md`` has the cost of both).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._executors = [ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"djserve-{n}") for n in range(size)]
        self._free = deque(self._executors)
        self._waiters: deque[asyncio.Future[ThreadPoolExecutor]] = deque()

    def checkout(self) -> Checkout:
        return Checkout(self)

    async def _take(self) -> ThreadPoolExecutor:
        if self._free:
            return self._free.popleft()
        waiter: asyncio.Future[ThreadPoolExecutor] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            # Cancelled after an executor was handed over, before this task resumed: pass it on.
            if waiter.done() and not waiter.cancelled():
                self._give_back(waiter.result())
            raise

    def _give_back(self, executor: ThreadPoolExecutor) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter is skipped
                waiter.set_result(executor)
                return
        self._free.append(executor)

    def shutdown(self) -> None:
        for executor in self._executors:
            executor.shutdown(wait=False)


class Checkout:
    """``async with pool.checkout() as executor``: one executor of ``pool``, held for the block."""

    __slots__ = ("_executor", "_pool")

    def __init__(self, pool: ExecutorPool) -> None:
        self._pool = pool
        self._executor: ThreadPoolExecutor | None = None

    async def __aenter__(self) -> ThreadPoolExecutor:
        self._executor = await self._pool._take()
        return self._executor

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._executor is not None:
            self._pool._give_back(self._executor)
            self._executor = None


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
