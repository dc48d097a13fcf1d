"""djserve's HTTP protocols: uvicorn's httptools and h11 protocols, bounded against hostile clients.

uvicorn takes its ``--http`` protocol as an import path, so these subclasses are selected, not patched
in (see ``djserve.config.uvicorn_args.http_protocol``). Each connection gets, with either parser alike
(where the RFCs allow either answer, as to obsolete line folding, each parser keeps its own; the
corpus in tests/unit/test_protocols.py lists them)

- a deadline for the request head (``header_timeout``), from connecting or from the previous response
  (then at least ``timeout_keep_alive``): 408 if the client sent part of a head, else a plain close.
  uvicorn has none, and its keep-alive timer stops at the first byte, so a client trickling a header
  kept a connection forever;
- a bound on the head (``max_header_bytes``, or uvicorn's ``h11_max_incomplete_event_size`` when that
  is smaller, for either parser), counted as bytes arrive and before the parser sees them, so a
  worker's memory stays bounded whatever a client sends, and on its fields (``max_headers``): 431.
  Chunk framing and trailer fields are bounded the same way (httptools buffers a trailer field whole);
- a bound on the body (``max_body_bytes``): 413 for a Content-Length over it before any body byte is
  read and before the app is called; a chunked body is cut off at the limit;
- the refusals the RFCs require of a server, where a parser lets the request through:

  - a request target with a fragment, or in no form a server accepts (the authority form is a
    proxy's, for CONNECT): 400 (RFC 9112 3.2);
  - ``*`` as the target of anything but OPTIONS: 400 (RFC 9112 3.2.4);
  - the absolute form (``GET http://host/path``) is served as its origin form ``/path``, with the
    target's authority as ``Host`` (RFC 9112 3.2.2); userinfo in it or an empty host: 400
    (RFC 9110 4.2.4, 4.2.1);
  - no ``Host`` in an HTTP/1.1 request, more than one, or one that is not a URI host: 400
    (RFC 9112 3.2);
  - ``Content-Length`` with ``Transfer-Encoding``: 400 (RFC 9112 6.1, a request-smuggling vector);
    a transfer coding other than ``chunked`` alone: 400 (RFC 9112 6.1, 6.3); a ``Content-Length`` that
    is not one decimal number: 400 (RFC 9112 6.3);
  - a body whose framing turns out malformed, after the app has the request: 400 unless the response
    has started, and the app's ``receive()`` says disconnected. uvicorn sent its 400 regardless, then
    the app's answer raised in h11 (or went out as a second answer with httptools);

- field values without leading and trailing whitespace (RFC 9112 5.1), and trailer fields discarded,
  never merged into the request's headers (RFC 9110 6.5.1: a client could send ``Host`` as a trailer);
- ``limit_concurrency`` counting HTTP requests in flight, with the probe paths exempt. uvicorn counts
  open connections (idle keep-alive and WebSockets included) and answered health checks 503.

A refusal is answered with ``Connection: close``; the connection then reads and discards for a moment
before closing, so that the client reads the answer instead of a reset (nginx's lingering close). A
malformed head that the parser itself rejects keeps uvicorn's answer: 400 and close.

Each parser's class lives in a module of its own, ``djserve.serve.httptools_protocol`` and
``djserve.serve.h11_protocol``, so that a worker imports only the parser it serves with (h11 is a dozen
modules, ``bench/findings.md``). They read state of uvicorn 0.54's protocols (``cycle``, ``headers``,
``url``, ``app``, ``limit_concurrency``, ``conn``, ``parser``), which is why uvicorn is pinned to that
minor version.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import re
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from uvicorn.config import Config
from uvicorn.protocols.http.flow_control import service_unavailable
from uvicorn.server import ServerState

from djserve.app import capacity
from djserve.app.probes import probe_path, probe_paths
from djserve.app.types import Receive, Scope, Send
from djserve.handoff import WorkerConfig

# Seconds a refused connection keeps reading (and dropping) what the client still sends.
LINGER_SECONDS = 2.0

# RFC 9110 4.2.1 / RFC 3986 3.2.2: uri-host [ ":" port ], the host an IP literal or a reg-name.
HOST = re.compile(rb"(?:\[[A-Za-z0-9._~!$&'()*+,;=:-]+\]|(?:[A-Za-z0-9._~!$&'()*+,;=-]|%[0-9A-Fa-f]{2})*)(?::[0-9]*)?")
# RFC 9112 3.2.2: the absolute form of an http or https target, split into its authority and the rest.
ABSOLUTE_FORM = re.compile(rb"https?://([^/?#]*)(.*)", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class Limits:
    header_timeout: float
    max_header_bytes: int
    max_headers: int
    max_body_bytes: int

    @classmethod
    def of(cls, worker: WorkerConfig, config: Config) -> Limits:
        """The worker's limits; uvicorn's ``h11_max_incomplete_event_size`` bounds the head too when smaller."""
        head = worker.max_header_bytes
        if config.h11_max_incomplete_event_size is not None:
            head = min(head, config.h11_max_incomplete_event_size)
        return cls(worker.header_timeout, head, worker.max_headers, worker.max_body_bytes)


@functools.cache
def worker_config() -> WorkerConfig:
    """This worker's hand-off; a plain uvicorn run without djserve's variables gets the declared defaults."""
    return WorkerConfig.from_environ(os.environ)


class Refused(Exception):
    """A request refused before or while its body is read: answered with ``status`` and closed."""

    def __init__(self, status: HTTPStatus, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def bad_request(reason: str) -> Refused:
    return Refused(HTTPStatus.BAD_REQUEST, reason)


def origin_form(method: bytes, target: bytes) -> tuple[bytes, bytes | None]:
    """The target to serve and, for the absolute form, the authority that replaces ``Host``."""
    if b"#" in target:
        raise bad_request("a fragment in the request target (RFC 9112 3.2)")
    if target.startswith(b"/"):
        return target, None
    if target == b"*":
        if method == b"OPTIONS":
            return target, None
        raise bad_request("* as the target of a method other than OPTIONS (RFC 9112 3.2.4)")
    absolute = ABSOLUTE_FORM.fullmatch(target)
    if absolute is None:
        raise bad_request("a request target in no form a server accepts (RFC 9112 3.2)")
    authority, rest = absolute.groups()
    if b"@" in authority:
        raise bad_request("userinfo in the request target (RFC 9110 4.2.4)")
    if not authority or authority.startswith(b":") or not HOST.fullmatch(authority):
        raise bad_request("no valid host in the request target (RFC 9110 4.2.1)")
    if not rest:  # an empty path is "/", or the server itself for OPTIONS (RFC 9112 3.2.1, 3.2.4)
        rest = b"*" if method == b"OPTIONS" else b"/"
    elif rest.startswith(b"?"):
        rest = b"/" + rest
    return rest, authority


def check_host(http_version: str, headers: list[tuple[bytes, bytes]], authority: bytes | None) -> None:
    """RFC 9112 3.2: one valid ``Host`` (required from HTTP/1.1); the absolute form's authority replaces it."""
    hosts = [index for index, (name, _) in enumerate(headers) if name == b"host"]
    if len(hosts) > 1:
        raise bad_request("more than one Host field (RFC 9112 3.2)")
    if not hosts and http_version not in ("0.9", "1.0"):
        raise bad_request("no Host field in an HTTP/1.1 request (RFC 9112 3.2)")
    if hosts and not HOST.fullmatch(headers[hosts[0]][1]):
        raise bad_request("a Host field that is not a URI host (RFC 9112 3.2)")
    if authority is not None:
        if hosts:
            headers[hosts[0]] = (b"host", authority)
        else:
            headers.append((b"host", authority))


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """The body's declared length, None for a chunked body or none; refuses framing a proxy may read otherwise."""
    lengths = [value for name, value in headers if name == b"content-length"]
    codings = [
        coding.strip().lower()
        for name, value in headers
        if name == b"transfer-encoding"
        for coding in value.split(b",")
    ]
    if codings:
        if lengths:
            raise bad_request("both Content-Length and Transfer-Encoding (RFC 9112 6.1)")
        if codings != [b"chunked"]:
            # RFC 9112 6.3: 400 unless chunked is the final coding; 400 too for the codings before it, as
            # h11 answers (the SHOULD of 501 in RFC 9112 6.1 would differ between the parsers).
            raise bad_request("a transfer coding other than chunked alone (RFC 9112 6.1, 6.3)")
        return None
    if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):
        raise bad_request("a Content-Length that is not one decimal number (RFC 9112 6.3)")
    return int(lengths[0]) if lengths else None


def error_response(status: HTTPStatus, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    body = f"{status.phrase}\n".encode()
    head = [f"HTTP/1.1 {status.value} {status.phrase}\r\n".encode()]
    head += [b"%s: %s\r\n" % header for header in default_headers]
    head += [b"content-type: text/plain; charset=utf-8\r\n", b"content-length: %d\r\n" % len(body)]
    return b"".join([*head, b"connection: close\r\n\r\n", body])


class Guard(asyncio.Protocol):
    """The deadline, limits and refusals, shared by both parsers; each subclass reports its parser's events."""

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

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        worker: WorkerConfig | None = None,
    ) -> None:
        """uvicorn's protocol, then the guard; ``worker`` is the hand-off to enforce (None: this worker's,
        from the environment)."""
        super().__init__(config, server_state, app_state, _loop)  # type: ignore[call-arg]  # uvicorn's, next in the MRO
        worker = worker or worker_config()
        self.limits = Limits.of(worker, self.config)
        self.exempt_paths = probe_paths(worker)
        self.head_pending = True  # waiting for a complete request head
        self.head_bytes = 0  # bytes received towards that head
        self.body_bytes = 0
        self.framing_bytes = 0  # bytes received since the body's last byte: chunk framing and trailers
        self.head_timer: asyncio.TimerHandle | None = None
        self.refused = False
        # uvicorn swaps in its 503 app when open connections or tasks reach the limit; this class
        # applies the limit itself, in `_admit`, to HTTP requests in flight.
        self.concurrency = self.limit_concurrency
        self.limit_concurrency = None
        self.downstream = self.app
        self.app = self._admit
        self._own_parser()

    def _own_parser(self) -> None:
        """Puts djserve's parser in place of the one uvicorn's protocol made, once the limits are known."""
        raise NotImplementedError

    async def _admit(self, scope: Scope, receive: Receive, send: Send) -> object:
        """The app uvicorn runs for each request: probes always, others within ``limit_concurrency``.

        It returns what the app returns, so that uvicorn still reports an app that returns a value.
        """
        if probe_path(scope, self.exempt_paths) is not None:
            return await self.downstream(scope, receive, send)
        if self.concurrency is not None and capacity.HTTP_REQUESTS.value >= self.concurrency:
            self.logger.warning("Exceeded concurrency limit.")
            await service_unavailable(scope, receive, send)  # type: ignore[arg-type]
            return None
        with capacity.HTTP_REQUESTS:
            return await self.downstream(scope, receive, send)

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
            return
        body_bytes = self.body_bytes
        self._receive(data)
        if self.head_pending or self.refused or self.transport.is_closing():
            return
        # Reads that bring no body byte carry chunk framing or trailer fields: bounded like a head.
        self.framing_bytes = self.framing_bytes + len(data) if self.body_bytes == body_bytes else 0
        if self.framing_bytes > self.limits.max_header_bytes:
            self._refuse(
                Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "chunk framing or trailers over max_header_bytes")
            )

    def _receive(self, data: bytes) -> None:
        try:
            super().data_received(data)
        except Refused as refusal:
            self._refuse(refusal)

    # Parser events, reported by the subclasses

    def _head_complete(
        self, method: bytes, target: bytes, http_version: str, headers: list[tuple[bytes, bytes]]
    ) -> bytes:
        """Check a complete head; returns the target to serve, and rewrites ``headers`` in place."""
        self._disarm()
        if len(headers) > self.limits.max_headers:
            raise Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "more header fields than max_headers")
        target, authority = origin_form(method, target)
        check_host(http_version, headers, authority)
        length = content_length(headers)
        if length is not None and length > self.limits.max_body_bytes:
            raise Refused(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "Content-Length over max_body_bytes")
        # From here on a refusal is about this request, whose app may be running.
        self.head_pending = False
        self.body_bytes = 0
        self.framing_bytes = 0
        return target

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
        # While a head is pending, the cycle is an earlier request's: answered once it completed.
        answered = cycle is not None and cycle.response_started and not (self.head_pending and cycle.response_complete)
        if cycle is not None and not cycle.response_complete:
            # The app is running: from now on its receive() says disconnected and its sends are dropped.
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
