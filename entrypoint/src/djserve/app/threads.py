"""The threads that run Django's sync code: ``threads`` long-lived threads per worker, shared by every path.

Django keeps its database connections per thread. Under plain ASGI, asgiref starts a new thread for
every request's sync work (each request enters a fresh ``ThreadSensitiveContext``), so every request
opens a connection and ``CONN_MAX_AGE`` leaks them. Here a worker has exactly ``threads`` threads, so
reused connections, at most ``threads`` of them; requests wait for a free thread instead of creating one.

The threads pull their work from one shared queue of sessions. A session is one request's claim on a
thread: its first call goes to whichever thread is free, and its later calls to that same thread, one
at a time, until the request releases it. The thread that ends a session takes the next one from the
queue at once: handing a sleeping thread on through the event loop cost about 30 µs a request
(``bench/findings.md``). Results go back with one ``call_soon_threadsafe`` a call.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from functools import partial
from queue import SimpleQueue
from typing import Any, ParamSpec, Protocol, TypeVar

from asgiref.sync import SyncToAsync, ThreadSensitiveContext

from djserve.app.types import ASGIApp, Receive, Scope, Send

P = ParamSpec("P")
R = TypeVar("R")
logger = logging.getLogger("djserve.threads")


class ThreadMetrics(Protocol):
    """What one pool thread reports, from that thread."""

    def started(self, queued_at: float) -> None:
        """The thread took a session that was queued at ``queued_at`` (``time.perf_counter``)."""

    def finished(self) -> None:
        """The thread is done with that session."""


class PoolMetrics(Protocol):
    """What the pool reports when metrics are on (``djserve.app.observe``): each thread its own."""

    def thread(self) -> ThreadMetrics: ...


class ThreadPool:
    """``size`` daemon threads serving sessions; a worker has one, and both paths of hybrid share it."""

    def __init__(self, size: int, metrics: PoolMetrics | None = None) -> None:
        self.size = size
        self.metrics = metrics
        self._sessions: SimpleQueue[Session] = SimpleQueue()
        # Daemon threads: the worker exits once uvicorn has finished its requests, without joining
        # threads that wait for work (a thread still running a request at exit is cut short, as before).
        for n in range(size):
            threading.Thread(target=self._work, name=f"djserve-{n}", daemon=True).start()

    def session(self) -> Session:
        return Session(self._sessions)

    def _work(self) -> None:
        metrics = None if self.metrics is None else self.metrics.thread()
        while True:
            session = self._sessions.get()
            if metrics is not None:
                metrics.started(session.queued_at)
            try:
                session.serve()
            except Exception:  # a result that could not be delivered (the loop closed): the thread lives on
                logger.exception("djserve thread: a call's result was lost")
            if metrics is not None:
                metrics.finished()


class Session(Executor):
    """One request's thread: calls run on it one at a time, in order, from the first call to ``release()``.

    It takes a thread at its first call, so a request that never calls sync code holds none. Both
    ``call`` and ``submit`` are made from the event loop's thread; ``release`` from either side.
    It is the ``Executor`` asgiref's ``ThreadSensitiveContext(executor=...)`` needs: one thread, one call
    at a time, for the whole request.
    """

    def __init__(self, sessions: SimpleQueue[Session]) -> None:
        self._sessions = sessions
        self._calls: SimpleQueue[Callable[[], None] | None] = SimpleQueue()
        self._started = False
        self.released = False
        self.queued_at = 0.0

    async def call(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """``fn`` on the session's thread; cheaper than ``loop.run_in_executor``, with no ``concurrent`` future."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._put(partial(_run, loop, future, partial(fn, *args, **kwargs)))
        return await future

    def submit(self, fn: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> Future[R]:
        future: Future[R] = Future()
        self._put(partial(_fill, future, partial(fn, *args, **kwargs)))
        return future

    def release(self) -> None:
        """The request is done with the thread: it goes back to the pool after the calls already made."""
        if not self.released:
            self.released = True
            if self._started:
                self._calls.put(None)

    def serve(self) -> None:
        """On a pool thread: run the session's calls until it is released."""
        while (call := self._calls.get()) is not None:
            call()

    def _put(self, call: Callable[[], None]) -> None:
        if self.released:
            raise RuntimeError("the session was released: its request has ended")
        self._calls.put(call)
        if not self._started:
            self._started = True
            self.queued_at = time.perf_counter()
            self._sessions.put(self)


def _run(loop: asyncio.AbstractEventLoop, future: asyncio.Future[R], fn: Callable[[], R]) -> None:
    if future.cancelled():  # the request was cancelled before its call began
        return
    # asgiref 3.13 (sync.py; capped in pyproject.toml): AsyncToSync runs a sync view's async_to_sync on the loop in
    # SyncToAsync.threadlocal.main_event_loop, if main_event_loop_pid is this process, instead of a new
    # loop per call; SyncToAsync.thread_handler sets both in each thread it runs code in, and
    # task_context, the list asgiref forwards a cancellation through. These threads are ours, so they
    # are set here per call (three attribute writes, not sync_to_async's 20 µs). task_context is
    # cleared so that a list left by an earlier request's asgiref call on this thread is not reused.
    local = SyncToAsync.threadlocal
    local.main_event_loop = loop
    local.main_event_loop_pid = os.getpid()
    local.task_context = None
    try:
        result = fn()
    except BaseException as error:
        loop.call_soon_threadsafe(_fail, future, error)
    else:
        loop.call_soon_threadsafe(_succeed, future, result)


def _succeed(future: asyncio.Future[R], result: R) -> None:
    if not future.cancelled():
        future.set_result(result)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.cancelled():
        future.set_exception(error)


def _fill(future: Future[R], fn: Callable[[], R]) -> None:
    # What concurrent.futures' own workers do: skip a cancelled call, else record its outcome.
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn()
    except BaseException as error:
        future.set_exception(error)
    else:
        future.set_result(result)


class PooledThreads:
    """ASGI middleware: each HTTP request's thread-sensitive sync code runs in one session of the pool.

    Django's ``ASGIHandler`` enters its own ``ThreadSensitiveContext`` per request; inside this one, that
    is a no-op, so the view, the middleware and the request signals share the session's thread and its
    DB connection. asgiref copies the request's context into each call itself. WebSocket and lifespan
    scopes pass through: a socket would hold a thread for hours.
    """

    def __init__(self, app: ASGIApp, pool: ThreadPool) -> None:
        self.app = app
        self.pool = pool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        session = self.pool.session()
        try:
            async with ThreadSensitiveContext(executor=session):
                await self.app(scope, receive, send)
        finally:
            session.release()
