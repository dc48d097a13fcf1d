"""The WSGI bridge: a PEP 3333 app (Django's WSGI handler) in uvicorn, one thread hand-off a request.

a2wsgi crossed between loop and thread about eight times a request. Here, a request:
1. in the loop: builds the environ and reads the body into a ``SpooledTemporaryFile`` (disk above
   ``spool_bytes``); a body above ``max_body_bytes`` gets 413 and the app never runs;
2. hands off once, loop to whichever thread of the worker's ``ThreadPool`` is free (a session):
   the app runs, ``start_response`` records status and headers, and the body is taken, whole if held
   in memory (a list, a tuple, or Django's ``HttpResponse``, whose iterator is a list iterator; the
   app is then closed and the thread goes straight on to the next request), else its first non-empty
   chunk;
3. returns once, thread to loop, which sends the response start and that body;
4. only for a streamed body (a generator, a file): the session keeps its thread, and the loop goes
   back to it for each further chunk, after the previous send returned (uvicorn's send waits for the
   socket: backpressure), until it ends, reaches its Content-Length or the client leaves. ``close()`` is
   always called, in that thread, so ``request_finished`` fires.

The pool's threads record the worker's loop as asgiref's main event loop, so ``async_to_sync`` in a
sync view runs on that loop. The app runs in its thread's own context, as under any WSGI server.
An error in the app propagates to uvicorn, which answers 500 if nothing was sent yet and otherwise
closes the connection, as gunicorn does.

The app's Content-Length frames the body, as under gunicorn; the thread counts bytes as it takes them.
A longer body is cut to that length (a stream is then closed unread), so the client gets exactly what
was announced. A shorter one is sent as it is, and the response is left unfinished, so uvicorn closes
the connection instead of leaving the client waiting for bytes that never come. HEAD, 204 and 304
responses carry no body (RFC 9110 6.4.1), whatever the app returns.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import IO
from urllib.parse import unquote_to_bytes
from wsgiref.types import WSGIApplication, WSGIEnvironment

from asgiref.sync import async_to_sync

from djserve.app.threads import Session, ThreadPool
from djserve.app.types import Message, Receive, Scope, Send

# Iterators of bodies already in memory: taken whole in the first hand-off.
IN_MEMORY: tuple[type, ...] = (type(iter([])), type(iter(())))
# wsgi.file_wrapper reads at least this much per hand-off (Django's FileResponse asks for 4 KiB).
FILE_BLOCK = 256 * 1024
# Statuses whose responses have no content (RFC 9110 6.4.1); a HEAD response has none either.
NO_CONTENT = frozenset({204, 304})
LOGGER = logging.getLogger("djserve.wsgi")
ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class Errors:
    """``wsgi.errors``: what the app writes there goes to the ``djserve.wsgi`` logger."""

    def write(self, text: str) -> None:
        if text.strip():
            LOGGER.error(text.rstrip("\n"))

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        pass


ERRORS = Errors()


class FileWrapper:
    """``wsgi.file_wrapper``: a file read in large blocks, each one in the request's thread."""

    def __init__(self, filelike: IO[bytes], block_size: int = FILE_BLOCK) -> None:
        self.filelike = filelike
        self.block_size = max(block_size, FILE_BLOCK)

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if data := self.filelike.read(self.block_size):
            return data
        raise StopIteration

    def close(self) -> None:
        if close := getattr(self.filelike, "close", None):
            close()


class Call:
    """One WSGI call: ``start_response``'s record and the rest of the body. Its methods run in the thread."""

    def __init__(self, send: Send, scope: Scope, session: Session) -> None:
        self.send = send
        self.scope = scope
        self.head = scope["method"] == "HEAD"
        self.session = session
        self.start: Message | None = None
        self.sent = False  # the response start went out: start_response may no longer replace it
        self.bodyless = self.head  # nothing of the body goes out: HEAD, 204 or 304
        self.owed: int | None = None  # bytes the Content-Length still announces; None: no Content-Length
        self.cut = False  # the body went on past its Content-Length (logged once)
        self.iterable: Iterable[bytes] | None = None  # not yet closed
        self.iterator: Iterator[bytes] | None = None  # the rest of a streamed body

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: ExcInfo | None = None
    ) -> Callable[[bytes], object]:
        error = exc_info[1] if exc_info else None
        if error is not None and self.sent:
            raise error
        if error is None and self.start is not None:
            raise RuntimeError("start_response called a second time without exc_info")
        code = int(status[:3])
        # Names lowercased, as the ASGI spec requires (Django writes Content-Type); values without the
        # whitespace around them (RFC 9110 5.5), as gunicorn sends them: Django's Set-Cookie values start
        # with a space, which h11 refuses.
        encoded = [(name.lower().encode("latin-1"), value.strip(" \t").encode("latin-1")) for name, value in headers]
        self.start = {"type": "http.response.start", "status": code, "headers": encoded}
        self.bodyless = self.head or code in NO_CONTENT
        self.owed = None if self.bodyless else content_length(encoded)
        return self.write

    def write(self, data: bytes) -> None:
        # The legacy write() callable: sent before it returns, through the worker's loop.
        if data := self.clip(data):
            async_to_sync(self.send_body)(data, more=True)

    def clip(self, data: bytes) -> bytes:
        """``data`` cut to what the Content-Length still announces, as gunicorn does: the rest is never sent."""
        if self.owed is None:
            return data
        if len(data) > self.owed:
            if not self.cut:
                self.cut = True
                LOGGER.warning("%s %s: the body is longer than its Content-Length; the rest is not sent", *self.target)
            data = data[: self.owed]
        self.owed -= len(data)
        return data

    @property
    def target(self) -> tuple[str, str]:
        return self.scope["method"], self.scope["path"]

    async def send_body(self, data: bytes, *, more: bool) -> None:
        """In the loop: the response start if not yet sent, then ``data`` (none for a bodyless response)."""
        if not self.sent:
            if self.start is None:
                raise RuntimeError("the WSGI app sent a body before calling start_response")
            self.sent = True
            await self.send(self.start)
        await self.send({"type": "http.response.body", "body": b"" if self.bodyless else data, "more_body": more})

    async def finish(self, data: bytes) -> None:
        """In the loop: the last of the body, and the end of the response if the body was as long as announced.

        A body short of its Content-Length leaves the response unfinished: uvicorn then closes the
        connection, which tells the client the body was cut short (gunicorn's sync worker and wsgiref close
        theirs after every response).
        """
        if not self.owed:
            await self.send_body(data, more=False)
            return
        await self.send_body(data, more=True)
        LOGGER.error("%s %s: the body ended %d bytes short of its Content-Length", *self.target, self.owed)

    def call(self, app: WSGIApplication, environ: WSGIEnvironment) -> bytes:
        """The first hand-off: run the app, and take its whole body if in memory, else its first chunk."""
        self.iterable = app(environ, self.start_response)
        try:
            iterator = iter(self.iterable)
            if isinstance(iterator, IN_MEMORY):
                body = self.clip(b"".join(iterator))
                self.close()
            else:
                self.iterator = iterator
                body = self.pull()
        except BaseException:
            self.close()
            raise
        if self.start is None:
            self.close()
            raise RuntimeError("the WSGI app returned without calling start_response")
        return body

    def pull(self) -> bytes:
        """The next non-empty chunk of a streamed body; the app is closed at the body's end (then b"")
        or once the Content-Length is reached, without reading further."""
        assert self.iterator is not None
        try:
            for chunk in self.iterator:
                if chunk:
                    taken = self.clip(chunk)
                    if self.owed == 0:
                        self.close()
                    return taken
        except BaseException:
            self.close()
            raise
        self.close()
        return b""

    def close(self) -> None:
        iterable, self.iterable, self.iterator = self.iterable, None, None
        try:
            if close := getattr(iterable, "close", None):
                close()
        finally:
            # Released here, in the thread: it takes the next request at once, not after a trip through the loop.
            self.session.release()


class WSGIBridge:
    """The ASGI app that serves ``wsgi_app``, each request in one thread of ``pool``."""

    def __init__(
        self, wsgi_app: WSGIApplication, pool: ThreadPool, *, max_body_bytes: int, spool_bytes: int = 1024 * 1024
    ) -> None:
        self.app = wsgi_app
        self.pool = pool
        self.max_body_bytes = max_body_bytes
        self.spool_bytes = spool_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self.http(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1000})  # uvicorn answers 403
        else:  # lifespan: nothing to start or stop
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        environ = build_environ(scope)
        with tempfile.SpooledTemporaryFile(max_size=self.spool_bytes) as body:
            if int(environ.get("CONTENT_LENGTH") or 0) > self.max_body_bytes:
                await too_large(send)
                return
            size = 0
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_body_bytes:
                    await too_large(send)
                    return
                try:
                    body.write(chunk)
                except OSError as error:  # the temporary directory is full: this request fails, the worker serves on
                    body.close()  # what it spooled is freed before the client hears of it
                    LOGGER.warning("%s %s: request body not spooled: %s", scope["method"], scope["path"], error)
                    await refuse(send, 507, b"Insufficient storage for the request body\n")
                    return
                if not message.get("more_body", False):
                    break
            body.seek(0)
            environ["wsgi.input"] = body
            # The body as read: a chunked one has no Content-Length (or one that Transfer-Encoding overrides,
            # RFC 9112 6.3), and Django reads only that many bytes.
            if size or "CONTENT_LENGTH" in environ:
                environ["CONTENT_LENGTH"] = str(size)
            session = self.pool.session()
            try:
                await self.respond(Call(send, scope, session), environ, session, receive)
            finally:
                session.release()  # already done in the thread unless the request was cut short

    async def respond(self, call: Call, environ: WSGIEnvironment, session: Session, receive: Receive) -> None:
        body = await session.call(call.call, self.app, environ)
        if call.iterator is None:  # in memory, or a stream that already ended or reached its Content-Length
            await call.finish(body)
            return
        disconnected = asyncio.ensure_future(receive())  # the body was read: the next message is the end
        try:
            while call.iterator is not None and not call.bodyless and not disconnected.done():
                await call.send_body(body, more=True)
                body = await session.call(call.pull)
            if not disconnected.done():
                await call.finish(body)
        finally:
            disconnected.cancel()
            if call.iterable is not None:
                await session.call(call.close)


def build_environ(scope: Scope) -> WSGIEnvironment:
    """PEP 3333's environ for an ASGI HTTP scope; paths are bytes decoded as latin-1, as CGI's are."""
    root = scope.get("root_path", "").encode()
    raw = scope.get("raw_path")
    path = raw.partition(b"?")[0] if raw else scope["path"].encode()
    if root and path.startswith(root):  # uvicorn puts root_path in front of both path and raw_path
        path = path[len(root) :]
    if raw:
        path = unquote_to_bytes(path)
    scheme = scope.get("scheme", "http")
    environ: WSGIEnvironment = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": root.decode("latin-1"),
        "PATH_INFO": path.decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scheme,
        "wsgi.errors": ERRORS,
        "wsgi.multithread": True,
        "wsgi.multiprocess": True,
        "wsgi.run_once": False,
        "wsgi.input_terminated": True,
        "wsgi.file_wrapper": FileWrapper,
    }
    if client := scope.get("client"):
        environ["REMOTE_ADDR"], environ["REMOTE_PORT"] = client[0], str(client[1])
    else:  # a Unix socket: set but empty, as under gunicorn (CGI requires it)
        environ["REMOTE_ADDR"] = ""
    for name, value in scope["headers"]:
        if b"_" in name:  # X_Forwarded_For would pass for X-Forwarded-For: dropped, as gunicorn and runserver do
            continue
        key = name.decode("latin-1").upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        text = value.decode("latin-1")
        if key in environ:  # a repeated header: one value, as CGI has it (cookies joined as HTTP/2 does)
            text = environ[key] + ("; " if key == "HTTP_COOKIE" else ", ") + text
        environ[key] = text
    server = scope.get("server")
    if server and server[1] is not None:
        environ["SERVER_NAME"], environ["SERVER_PORT"] = server[0], str(server[1])
    else:  # a Unix socket has no host or port: gunicorn takes them from the Host header
        environ["SERVER_NAME"], environ["SERVER_PORT"] = named_server(environ.get("HTTP_HOST"), scheme)
    return environ


def named_server(host: str | None, scheme: str) -> tuple[str, str]:
    """SERVER_NAME and SERVER_PORT from a Host header; PEP 3333 wants both, never empty."""
    name, _, port = (host or "").rpartition(":")
    if name and port.isascii() and port.isdigit():  # and not the end of an IPv6 address: "[::1]"
        return name, port
    return host or "localhost", "443" if scheme == "https" else "80"


def content_length(headers: list[tuple[bytes, bytes]]) -> int | None:
    """A response's Content-Length (the first, as uvicorn reads it); one that is not a number is the app's error."""
    for name, value in headers:
        if name == b"content-length":
            if not value.isdigit():
                raise ValueError(f"the WSGI app's Content-Length is not a number: {value!r}")
            return int(value)
    return None


async def too_large(send: Send) -> None:
    await refuse(send, 413, b"Request body too large\n")


async def refuse(send: Send, status: int, text: bytes) -> None:
    """Answer before the body is read whole; closing the connection leaves the rest of it unread."""
    headers = [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"%d" % len(text))]
    await send({"type": "http.response.start", "status": status, "headers": [*headers, (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": text})
