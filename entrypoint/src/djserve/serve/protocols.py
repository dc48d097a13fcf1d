"""djserve's HTTP protocols: uvicorn's httptools and h11 protocols, bounded against hostile clients.

uvicorn takes its ``--http`` protocol as an import path, so these subclasses are selected, not patched
in (see ``djserve.config.uvicorn_args.http_protocol``). Each connection gets:

- a deadline for the request head (``header_timeout``), from connecting or from the previous response
  (then at least ``timeout_keep_alive``): 408 if the client sent part of a head, else a plain close.
  uvicorn has none, and its keep-alive timer stops at the first byte, so a client trickling a header
  kept a connection forever;
- a bound on the head (``max_header_bytes``), counted as bytes arrive and before the parser sees them,
  so a worker's memory stays bounded whatever a client sends, and on its fields (``max_headers``): 431;
- a bound on the body (``max_body_bytes``): 413 for a Content-Length over it before any body byte is
  read and before the app is called; a chunked body is cut off at the limit;
- ``limit_concurrency`` counting HTTP requests in flight, with the probe paths exempt. uvicorn counts
  open connections (idle keep-alive and WebSockets included) and answered health checks 503.

A refusal is answered with ``Connection: close``; the connection then reads and discards for a moment
before closing, so that the client reads the answer instead of a reset (nginx's lingering close).

These classes read state of uvicorn 0.54's protocols (``cycle``, ``headers``, ``app``,
``limit_concurrency``, ``conn``, ``parser``), which is why uvicorn is pinned to that minor version.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
from array import array
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import h11
from uvicorn.config import Config
from uvicorn.protocols.http import h11_impl
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.server import ServerState

from djserve.app import capacity
from djserve.app.probes import probe_path, probe_paths
from djserve.app.types import Receive, Scope, Send
from djserve.handoff import WorkerConfig

# Seconds a refused connection keeps reading (and dropping) what the client still sends.
LINGER_SECONDS = 2.0


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    max_header_bytes: int
    max_headers: int
    max_body_bytes: int

    @classmethod
    def of(cls, worker: WorkerConfig) -> Limits:
        return cls(worker.header_timeout, worker.max_header_bytes, worker.max_headers, worker.max_body_bytes)


@functools.cache
def worker_config() -> WorkerConfig:
    """This worker's hand-off; a plain uvicorn run without djserve's variables gets the declared defaults."""
    return WorkerConfig.from_environ(os.environ)


@functools.cache
def limits() -> Limits:
    return Limits.of(worker_config())


@functools.cache
def exempt_paths() -> frozenset[str]:
    return probe_paths(worker_config())


class Refused(Exception):
    """A request refused before or while its body is read: answered with ``status`` and closed."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length" and value.strip().isdigit():
            return int(value)
    return None


def error_response(status: HTTPStatus, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = f"{status.phrase}\n".encode()
    head = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
    head += [b"%s: %s\r\n" % header for header in default_headers]
    head += [b"content-type: text/plain; charset=utf-8\r\n", b"content-length: %d\r\n" % len(body)]
    return b"".join([*head, b"connection: close\r\n\r\n", body])


class _Guard(asyncio.Protocol):
    """The deadline and limits, shared by both parsers; each subclass reports its parser's events."""

    # Set by uvicorn's protocol classes, which follow this one in the method resolution order.
    config: Config
    server_state: ServerState
    transport: asyncio.Transport
    loop: asyncio.AbstractEventLoop
    logger: logging.Logger
    client: tuple[str, int] | None
    app: Any
    limit_concurrency: int | None
    cycle: Any

    def _guard(self) -> None:
        self.limits = limits()
        self.head_pending = True  # waiting for a complete request head
        self.head_bytes = 0  # bytes received towards that head
        self.body_bytes = 0
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused = False
        # uvicorn swaps in its 503 app when open connections or tasks reach the limit; this class
        # applies the limit itself, in `_admit`, to HTTP requests in flight.
        self.concurrency = self.limit_concurrency
        self.limit_concurrency = None
        self.downstream = self.app
        self.app = self._admit

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The app uvicorn runs for each request: probes always, others within ``limit_concurrency``."""
        if probe_path(scope, exempt_paths()) is not None:
            await self.downstream(scope, receive, send)
        elif self.concurrency is not None and capacity.HTTP_REQUESTS.value >= self.concurrency:
            self.logger.warning("Exceeded concurrency limit.")
            await service_unavailable(scope, receive, send)  # type: ignore[arg-type]
        else:
            with capacity.HTTP_REQUESTS:
                await self.downstream(scope, receive, send)

    # Connection events

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self.refused:
            return
        if self.head_pending:
            room = self.limits.max_header_bytes - self.head_bytes
            if len(data) > room:
                # Feed only what the limit allows: the head may end inside it, then the rest is body.
                if room > 0:
                    self._receive(data[:room])
                if self.refused or self.transport.is_closing():
                    return
                if self.head_pending:
                    self._refuse(Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "head over max_header_bytes"))
                else:
                    self.data_received(data[room:])
                return
            self.head_bytes += len(data)
        self._receive(data)

    def _receive(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except Refused as refusal:
            self._refuse(refusal)

    # Parser events, reported by the subclasses

    def _head_complete(self, headers: list[tuple[bytes, bytes]]) -> None:
        self.head_pending = False
        self._disarm()
        self.body_bytes = 0
        if len(headers) > self.limits.max_headers:
            raise Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "more header fields than max_headers")
        length = content_length(headers)
        if length is not None and length > self.limits.max_body_bytes:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Content-Length over max_body_bytes")

    def _body_received(self, size: int) -> None:
        self.body_bytes += size
        if self.body_bytes > self.limits.max_body_bytes:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body over max_body_bytes")

    def _message_complete(self) -> None:
        self.head_pending = True
        self.head_bytes = 0
        self._arm()

    def _response_complete(self) -> None:
        self._arm()

    # The deadline

    def _arm(self) -> None:
        """Start the head deadline when the connection waits for a head and owes no response.

        After a response, a keep-alive connection has at least uvicorn's ``timeout_keep_alive``: the
        proxy preset keeps upstream connections longer than nginx does, so that nginx closes first.
        uvicorn's own keep-alive timer stops at the first byte; this deadline does not.
        """
        responding = self.cycle is not None and not self.cycle.response_complete
        if self.head_pending and not responding and self.head_timer is None and self._serving():
            timeout = self.limits.header_timeout
            if self.cycle is not None:
                timeout = max(timeout, self.config.timeout_keep_alive)
            self.head_timer = self.loop.call_later(timeout, self._head_timeout)

    def _serving(self) -> bool:
        """Still this connection's protocol: not closing, and not handed over to a WebSocket protocol."""
        return not self.transport.is_closing() and self.transport.get_protocol() is self

    def _disarm(self) -> None:
        if self.head_timer is not None:
            self.head_timer.cancel()
            self.head_timer = None

    def _head_timeout(self) -> None:
        self.head_timer = None
        if not self.head_pending or not self._serving():
            return
        if self.head_bytes:
            self._refuse(Refused(HTTPStatus.REQUEST_TIMEOUT, "no complete request head within header_timeout"))
        else:
            self.transport.close()

    # Refusal

    def _refuse(self, refusal: Refused) -> None:
        self._disarm()
        self.refused = True
        cycle = self.cycle
        answered = False
        if cycle is not None and not cycle.response_complete:
            # The app is running: from now on its receive() says disconnected and its sends are dropped.
            answered = cycle.response_started
            cycle.disconnected = True
            cycle.message_event.set()
        if not answered:
            self.transport.write(error_response(refusal.status, self.server_state.default_headers))
        prefix = f"{self.client[0]}:{self.client[1]} - " if self.client else ""
        level = logging.INFO if refusal.status == HTTPStatus.REQUEST_TIMEOUT else logging.WARNING
        self.logger.log(level, "%s%d %s: %s.", prefix, refusal.status, refusal.status.phrase, refusal.reason)
        if self.transport.can_write_eof():
            self.transport.write_eof()
            self.transport.resume_reading()
            self.loop.call_later(LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


try:
    import httptools
    from uvicorn.protocols.http import httptools_impl
except ImportError:  # uvicorn without its [standard] extra: only the h11 protocol exists
    pass
else:

    class _Parser(httptools.HttpRequestParser):
        """httptools reports an exception raised in a callback as a parser error; this raises a refusal as is."""

        def feed_data(self, data: bytes | bytearray | memoryview | array[int]) -> None:
            try:
                super().feed_data(data)
            except httptools.HttpParserCallbackError as error:
                if isinstance(error.__context__, Refused):
                    raise error.__context__ from None
                raise

    class HttpToolsProtocol(_Guard, httptools_impl.HttpToolsProtocol):
        def __init__(
            self,
            config: Config,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(config, server_state, app_state, _loop)
            self.parser = _Parser(self)
            # As uvicorn sets it on its own parser: answer the first of pipelined requests after a close.
            self.parser.set_dangerous_leniencies(lenient_data_after_close=True)
            self._guard()

        def on_header(self, name: bytes, value: bytes) -> None:
            if len(self.headers) >= self.limits.max_headers:
                raise Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "more header fields than max_headers")
            super().on_header(name, value)

        def on_headers_complete(self) -> None:
            self._head_complete(self.headers)
            super().on_headers_complete()

        def on_body(self, body: bytes) -> None:
            self._body_received(len(body))
            super().on_body(body)

        def on_message_complete(self) -> None:
            super().on_message_complete()
            self._message_complete()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._response_complete()


class _Connection(h11.Connection):
    """h11's connection, reporting each event from the client to the protocol before uvicorn sees it."""

    def __init__(self, protocol: H11Protocol, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self.protocol = protocol

    def next_event(self) -> Any:
        event = super().next_event()
        self.protocol.inspect(event)
        return event


class H11Protocol(_Guard, h11_impl.H11Protocol):
    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._guard()
        # h11 buffers an incomplete head up to this size itself; the head limit is djserve's.
        self.conn = _Connection(self, self.limits.max_header_bytes)

    def inspect(self, event: Any) -> None:
        if isinstance(event, h11.Request):
            self._head_complete(list(event.headers))
        elif isinstance(event, h11.Data):
            self._body_received(len(event.data))
        elif isinstance(event, h11.EndOfMessage):
            self._message_complete()

    def handle_events(self) -> None:
        # Also run after a response completes, for pipelined requests: a refusal is answered here too.
        try:
            super().handle_events()
        except Refused as refusal:
            self._refuse(refusal)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._response_complete()
