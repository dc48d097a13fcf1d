"""The presets against the reference, request by request.

One table of requests, written as raw bytes so that the test controls their framing (chunked bodies,
``Expect: 100-continue``, ``HEAD``), is sent to the reference and to every djserve interface serving the
same fresh project. Each answer must have the reference's status, header set (``date`` and ``server``
aside) and body bytes, unless a documented exception below says why ours differs.

- The reference for ``asgi``, ``hybrid`` and ``auto`` is ``uvicorn mysite.asgi:application``; for ``wsgi``,
  ``uvicorn mysite.wsgi:application --interface wsgi``. Their flags are the ones ``djserve command`` prints
  for ``--preset default``, with uvicorn's own app and protocol in place of djserve's, so the interface
  (and djserve's app stack and protocols) is the only difference.
- The wrapped project's ``asgi.py`` wraps Django's handler in a middleware that adds a header, and mounts a
  plain ASGI app at ``/sub/``: ``auto`` must serve it through that app, as the reference does.
"""

from __future__ import annotations

import contextlib
import gzip
import re
import shlex
import shutil
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from djserve.config.uvicorn_args import FACTORY, HTTP_PROTOCOLS

from conftest import Server, djserve, free_port, printed_command, start

PROJECT = Path(__file__).parent / "projects" / "differential"
SETTINGS = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
HOST = "testserver"
ROOT_PATH = "/api"
# Fields every server sets to its own value.
IGNORED = frozenset({"date", "server"})

SETTINGS_PY = f"""
DEBUG = False  # Django's error pages without tracebacks, addresses and timings
ALLOWED_HOSTS = [{HOST!r}, "127.0.0.1"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
"""


# The servers


@dataclass(frozen=True)
class Target:
    """A server to start: a reference (uvicorn on the project's app) or djserve with an interface."""

    name: str
    interface: str  # djserve's; for a reference, the interface uvicorn is given
    reference: bool = False
    wrapped: bool = False
    root_path: str = ""


TARGETS = [
    Target("uvicorn", "asgi", reference=True),
    Target("uvicorn-wsgi", "wsgi", reference=True),
    Target("uvicorn-wrapped", "asgi", reference=True, wrapped=True),
    Target("uvicorn@api", "asgi", reference=True, root_path=ROOT_PATH),
    Target("uvicorn-wsgi@api", "wsgi", reference=True, root_path=ROOT_PATH),
    Target("asgi", "asgi"),
    Target("wsgi", "wsgi"),
    Target("hybrid", "hybrid"),
    # hybrid covers both of djserve's paths under a root path: sync views on the WSGI bridge, async on the ASGI app.
    Target("hybrid@api", "hybrid", root_path=ROOT_PATH),
    Target("wsgi@api", "wsgi", root_path=ROOT_PATH),
]
# Each djserve server, and the reference it is compared with.
COMPARED = {
    "asgi": "uvicorn",
    "hybrid": "uvicorn",
    "wsgi": "uvicorn-wsgi",
    "hybrid@api": "uvicorn@api",
    "wsgi@api": "uvicorn-wsgi@api",
}
BY_NAME = {target.name: target for target in TARGETS}


def make_project(root: Path, *, wrapped: bool) -> Path:
    """The stock startproject with the differential views, and for ``wrapped`` the wrapping asgi.py."""
    site = root / ("wrapped" if wrapped else "plain")
    shutil.copytree(root / "stock", site)
    package = site / "mysite"
    shutil.copy(PROJECT / "views.py", package / "views.py")
    (package / "data").mkdir()
    (package / "data" / "data.bin").write_bytes(bytes(range(256)) * 1200)  # 300 KiB, several reads
    (package / "data" / "notes.txt").write_text("notes\n" * 100)
    with (package / "urls.py").open("a") as urls:
        urls.write("\nfrom mysite.views import urlpatterns as views\n\nurlpatterns += views\n")
    with (package / "settings.py").open("a") as settings:
        settings.write(SETTINGS_PY)
    if wrapped:
        shutil.copy(PROJECT / "wrapped_asgi.py", package / "asgi.py")
    return site


def root_path_args(target: Target) -> list[str]:
    return ["--root-path", target.root_path] if target.root_path else []


def reference_line(target: Target, site: Path, port: int) -> str:
    """The line ``djserve command`` prints for the default preset, running the project's app on uvicorn's protocol."""
    printed = djserve(
        "command", "--preset", "default", "--host", "127.0.0.1", "--port", str(port), *root_path_args(target), cwd=site, env=SETTINGS
    )
    assert printed.code == 0, printed.err
    argv = shlex.split(printed.out)
    argv = argv[argv.index("uvicorn") :]  # the variables before it are djserve's hand-off to its workers
    protocols = {path: name for name, path in HTTP_PROTOCOLS.items()}
    argv = [protocols.get(word, word) for word in argv if word != "--factory"]
    argv[argv.index(FACTORY)] = f"mysite.{target.interface}:application"
    argv[argv.index("--interface") + 1] = "wsgi" if target.interface == "wsgi" else "asgi3"
    return shlex.join(argv)


def launch(target: Target, site: Path, stack: contextlib.ExitStack) -> int:
    """Start ``target`` serving ``site``, stopped when ``stack`` closes; its port once it answers."""
    if target.reference:
        port = free_port()
        line = reference_line(target, site, port)
        stack.enter_context(printed_command(line, site, port, ready="/resource", **SETTINGS))
        return port
    args = ["--preset", "default", "--interface", target.interface, *root_path_args(target)]
    server = start(site, *args, ready="/-/ready", **SETTINGS)
    stack.callback(stop, server)
    return server.port


def stop(server: Server) -> None:
    server.kill()
    server.process.communicate(timeout=20)


@pytest.fixture(scope="module")
def ports(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """Every target, started at once (each takes seconds to import Django), by name: its port."""
    root = tmp_path_factory.mktemp("differential")
    shutil.copytree(project, root / "stock")
    sites = {wrapped: make_project(root, wrapped=wrapped) for wrapped in (False, True)}
    with contextlib.ExitStack() as stack:
        with ThreadPoolExecutor(len(TARGETS)) as pool:
            futures = {t.name: pool.submit(launch, t, sites[t.wrapped], stack) for t in TARGETS}
        for future in futures.values():
            if error := future.exception():
                raise error
        yield {name: future.result() for name, future in futures.items()}


# The requests


@dataclass(frozen=True)
class Case:
    """One request, as bytes; ``body`` waits for the server's ``100 Continue`` (at most ``CONTINUE_WAIT``)."""

    name: str
    head: bytes
    body: bytes = b""
    root_path: bool = False  # sent to the servers started with ROOT_PATH

    @property
    def method(self) -> str:
        return self.head.split(b" ", 1)[0].decode()


def raw(
    method: str,
    target: str | bytes,
    *fields: str | tuple[str, str | bytes],
    body: bytes = b"",
    chunks: list[bytes] | None = None,
    trailers: str = "",
    version: str = "HTTP/1.1",
) -> bytes:
    """A request's bytes: ``Host`` first (unless a field names it), then ``fields``, then framing and body.

    A str field is a whole line as is; a pair gets ``name: value``. A body gets its Content-Length, and
    ``chunks`` are sent chunked, followed by ``trailers``.
    """
    lines = [(method.encode() + b" " + (target if isinstance(target, bytes) else target.encode()) + b" " + version.encode())]
    named = [f[0].lower() if isinstance(f, tuple) else f.split(":")[0].lower() for f in fields]
    if "host" not in named:
        lines.append(b"Host: " + HOST.encode())
    for f in fields:
        if isinstance(f, tuple):
            value = f[1] if isinstance(f[1], bytes) else f[1].encode()
            lines.append(f[0].encode() + b": " + value)
        else:
            lines.append(f.encode())
    if chunks is not None:
        lines.append(b"Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailers.encode() + b"\r\n"
    else:
        if body and not {"content-length", "transfer-encoding"} & set(named):
            lines.append(b"Content-Length: %d" % len(body))
        payload = body
    return b"\r\n".join(lines) + b"\r\n\r\n" + payload


def urlencoded(size: int) -> bytes:
    return b"field=" + b"x" * size


MULTIPART_BOUNDARY = "differential-boundary"


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (name, filename or None, content) parts."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "\r\nContent-Type: application/octet-stream" if filename else ""
        out += f"--{MULTIPART_BOUNDARY}\r\nContent-Disposition: {disposition}{kind}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{MULTIPART_BOUNDARY}--\r\n".encode()


FORM = ("Content-Type", "application/x-www-form-urlencoded")
FORM_BODY = "a=1&a=2&b=caf%C3%A9&c=&d=x+y".encode()
UPLOAD = ("Content-Type", f"multipart/form-data; boundary={MULTIPART_BOUNDARY}")
UPLOAD_BODY = multipart(
    ("title", None, "résumé".encode()),
    ("file", "a.bin", bytes(range(256)) * 40),
    ("file", "b.txt", b"second file\n"),
)
OCTETS = ("Content-Type", "application/octet-stream")
OVER_LIMIT = 80 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE is 64 KiB


def cases() -> list[Case]:
    views: list[Case] = []
    for suffix in ("", "-async"):
        echo = f"/echo{suffix}"
        views += [
            Case(f"get{suffix}", raw("GET", echo)),
            Case(f"head{suffix}", raw("HEAD", echo)),
            Case(f"options{suffix}", raw("OPTIONS", echo)),
            Case(f"stream{suffix}", raw("GET", f"/stream{suffix}")),
            Case(f"head-stream{suffix}", raw("HEAD", f"/stream{suffix}")),
            Case(f"error{suffix}", raw("GET", f"/error{suffix}")),
            Case(f"form-post{suffix}", raw("POST", echo + "?a=0", FORM, body=FORM_BODY)),
            Case(f"multipart{suffix}", raw("POST", echo, UPLOAD, body=UPLOAD_BODY)),
            Case(f"form-over-limit{suffix}", raw("POST", echo, FORM, body=urlencoded(OVER_LIMIT))),
            Case(f"raw-over-limit{suffix}", raw("POST", echo, OCTETS, body=b"x" * OVER_LIMIT)),
            Case(f"chunked{suffix}", raw("POST", echo, OCTETS, chunks=[b"first ", b"second ", b"x" * 5000])),
            Case(f"chunked-form{suffix}", raw("PUT", echo, FORM, chunks=[FORM_BODY[:5], FORM_BODY[5:]])),
            Case(f"chunked-multipart{suffix}", raw("POST", echo, UPLOAD, chunks=[UPLOAD_BODY[:300], UPLOAD_BODY[300:]])),
            Case(f"chunked-over-limit{suffix}", raw("POST", echo, FORM, chunks=[urlencoded(OVER_LIMIT)])),
            Case(
                f"expect-continue{suffix}",
                raw("POST", echo, FORM, "Expect: 100-continue", ("Content-Length", str(len(FORM_BODY)))),
                FORM_BODY,
            ),
            Case(
                f"expect-continue-chunked{suffix}",
                raw("POST", echo, OCTETS, "Expect: 100-continue", "Transfer-Encoding: chunked"),
                b"5\r\nhello\r\n0\r\n\r\n",
            ),
            Case(f"percent-encoded{suffix}", raw("GET", f"{echo}/a%20b/caf%C3%A9/%E2%82%AC")),
            Case(f"encoded-slash{suffix}", raw("GET", f"{echo}/a%2Fb/%3F%23")),
            Case(f"raw-utf8-path{suffix}", raw("GET", f"{echo}/café/€".encode())),
            Case(f"not-utf8-path{suffix}", raw("GET", f"{echo}/%FF%FE")),
            Case(f"dot-segments{suffix}", raw("GET", f"{echo}/a/%2E%2E/b")),
            Case(f"repeated-query{suffix}", raw("GET", f"{echo}?a=1&a=2&b=caf%C3%A9&c&d=x+y&e=%FF")),
            Case(f"raw-utf8-query{suffix}", raw("GET", f"{echo}?q=café".encode())),
            Case(f"empty-query{suffix}", raw("GET", f"{echo}?")),
            Case(
                f"meta-headers{suffix}",
                raw(
                    "GET",
                    echo,
                    ("X-Multi", "one"),
                    ("X-Multi", "two"),
                    ("Cookie", "a=1; b=2"),
                    ("Cookie", "c=3"),
                    ("Accept-Language", "fr-CH, fr;q=0.9"),
                    ("X-Latin-1", "caf\xe9".encode("latin-1")),
                    ("X-Empty", ""),
                    ("X-Spaces", "  padded  "),
                ),
            ),
            Case(f"underscore-header{suffix}", raw("GET", echo, ("X-Custom", "real"), ("X_Custom", "spoofed"))),
            Case(
                f"content-type-charset{suffix}",
                raw("POST", echo, ("Content-Type", "text/plain; charset=latin-1"), body="caf\xe9".encode("latin-1")),
            ),
            Case(
                f"proxy-headers{suffix}",
                raw("GET", echo, ("X-Forwarded-For", "203.0.113.7, 10.0.0.1"), ("X-Forwarded-Proto", "https")),
            ),
            Case(f"host-with-port{suffix}", raw("GET", echo, ("Host", f"{HOST}:8080"))),
            Case(f"disallowed-host{suffix}", raw("GET", echo, ("Host", "evil.example"))),
            Case(f"http-1.0{suffix}", raw("GET", echo, version="HTTP/1.0")),
            Case(f"http-1.0-no-host{suffix}", b"GET %s HTTP/1.0\r\n\r\n" % echo.encode()),
            Case(f"connection-close{suffix}", raw("GET", echo, "Connection: close")),
        ]
    responses = [
        Case("file", raw("GET", "/file")),
        Case("file-range", raw("GET", "/file", ("Range", "bytes=0-99"))),
        Case("file-suffix-range", raw("GET", "/file", ("Range", "bytes=-10"))),
        Case("head-file", raw("HEAD", "/file")),
        Case("attachment", raw("GET", "/attachment")),
        Case("conditional", raw("GET", "/conditional")),
        Case("conditional-etag", raw("GET", "/conditional", ("If-None-Match", '"v1"'))),
        Case("conditional-etag-head", raw("HEAD", "/conditional", ("If-None-Match", '"v1"'))),
        Case("conditional-since", raw("GET", "/conditional", ("If-Modified-Since", "Tue, 02 Jan 2024 00:00:00 GMT"))),
        Case("conditional-stale", raw("GET", "/conditional", ("If-None-Match", '"v0"'))),
        Case("conditional-if-match", raw("PUT", "/conditional", ("If-Match", '"v2"'), body=b"x")),
        Case("redirect", raw("GET", "/redirect")),
        Case("redirect-elsewhere", raw("GET", "/redirect-elsewhere")),
        Case("append-slash", raw("GET", "/slash/caf%C3%A9?x=%C3%A9")),
        Case("append-slash-post", raw("POST", "/slash/name", FORM, body=FORM_BODY)),
        Case("no-content", raw("GET", "/no-content")),
        Case("teapot", raw("GET", "/teapot")),
        Case("head-teapot", raw("HEAD", "/teapot")),
        Case("gzip", raw("GET", "/gzip", ("Accept-Encoding", "gzip, deflate"))),
        Case("gzip-identity", raw("GET", "/gzip")),
        Case("gzip-stream", raw("GET", "/gzip-stream", ("Accept-Encoding", "gzip"))),
        Case("head-gzip", raw("HEAD", "/gzip", ("Accept-Encoding", "gzip"))),
        Case("cookies", raw("GET", "/cookies")),
        Case("headers", raw("GET", "/headers")),
        Case("length-mismatch", raw("GET", "/length-mismatch")),
        Case("not-found", raw("GET", "/missing")),
        Case("not-found-raised", raw("GET", "/not-found")),
        Case("head-not-found", raw("HEAD", "/missing")),
        Case("big", raw("GET", "/big")),
        Case("head-big", raw("HEAD", "/big")),
        Case("class-get", raw("GET", "/resource")),
        Case("class-post", raw("POST", "/resource", FORM, body=FORM_BODY)),
        Case("class-options", raw("OPTIONS", "/resource")),
        Case("class-not-allowed", raw("PUT", "/resource", body=b"x")),
        Case("class-head", raw("HEAD", "/resource")),
        Case("async-class-options", raw("OPTIONS", "/resource-async")),
        Case("async-class-delete", raw("DELETE", "/resource-async")),
        Case("async-class-not-allowed", raw("POST", "/resource-async", FORM, body=FORM_BODY)),
        Case("mounted", raw("GET", "/sub/x?y=1")),
        Case("mounted-prefix-only", raw("GET", "/subway")),
    ]
    # Request shapes whose handling is the HTTP parser's (djserve.serve.protocols).
    framing = [
        Case("absolute-form", raw("GET", f"http://{HOST}/echo?a=1")),
        Case("absolute-form-other-host", raw("GET", "http://other.example/echo")),
        Case("asterisk-options", raw("OPTIONS", "*")),
        Case("duplicate-host", raw("GET", "/echo", ("Host", HOST), ("Host", "evil.example"))),
        Case("space-before-colon", raw("GET", "/echo", "X-Spaced : value")),
        Case("content-length-and-chunked", raw("POST", "/echo", OCTETS, ("Content-Length", "3"), chunks=[b"hello"])),
        Case("chunked-trailers", raw("POST", "/echo", OCTETS, "Trailer: X-Sum", chunks=[b"hello"], trailers="X-Sum: 5\r\n")),
        Case(
            "chunk-extension",
            raw("POST", "/echo", OCTETS, "Transfer-Encoding: chunked", body=b"5;name=value\r\nhello\r\n0\r\n\r\n"),
        ),
        Case("lowercase-method", raw("get", "/echo")),
        Case("unknown-method", raw("PURGE", "/echo")),
        Case("pipelined", raw("GET", "/teapot") + raw("GET", "/echo")),
    ]
    under_root = [
        Case(f"root-path-{case.name}", case.head, case.body, root_path=True)
        for case in views + responses
        if case.name
        in {
            "get", "get-async", "percent-encoded", "percent-encoded-async", "redirect", "append-slash",
            "not-found", "form-post", "form-post-async", "mounted", "head-file",
        }
    ]
    under_root += [
        Case("root-path-prefixed", raw("GET", f"{ROOT_PATH}/echo"), root_path=True),
        Case("root-path-prefixed-async", raw("GET", f"{ROOT_PATH}/echo-async"), root_path=True),
    ]
    return views + responses + framing + under_root


# The answers

# How long a client with ``Expect: 100-continue`` waits for the interim answer before sending its body anyway.
CONTINUE_WAIT = 2.0
TIMEOUT = 10.0
# Sent after the answer: the connection is still usable if it is answered as on a new connection.
PROBE = raw("GET", "/teapot")


@dataclass(frozen=True)
class Response:
    status_line: str
    headers: tuple[tuple[str, str], ...]  # names lowercased, sorted; IGNORED left out
    body: bytes
    trailers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Answer:
    """All a client sees of one case: interim answers, the response(s), and whether the connection stays open."""

    responses: tuple[Response, ...]
    interim: tuple[str, ...] = ()
    then: str = "open"  # "open", "closed", or what the next request got instead of its answer


class Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError(f"connection closed; unparsed: {self.buffer[:200]!r}")
        self.buffer += data

    def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            self.fill()
        found, self.buffer = self.buffer.split(marker, 1)
        return found

    def exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self.fill()
        found, self.buffer = self.buffer[:size], self.buffer[size:]
        return found

    def rest(self) -> bytes:
        with contextlib.suppress(EOFError):
            while True:
                self.fill()
        found, self.buffer = self.buffer, b""
        return found


def fields(lines: list[bytes]) -> list[tuple[str, str]]:
    pairs = [line.decode("latin-1").split(":", 1) for line in lines if line]
    return [(name.lower(), value.strip(" \t")) for name, value in pairs]


def read_response(reader: Reader, method: str) -> tuple[str, list[tuple[str, str]], bytes, list[tuple[str, str]]]:
    status_line, *lines = reader.until(b"\r\n\r\n").split(b"\r\n")
    headers = fields(lines)
    status = int(status_line.split()[1])
    named = dict(headers)
    trailers: list[tuple[str, str]] = []
    if status < 200 or status in (204, 304) or method == "HEAD":
        body = b""
    elif named.get("transfer-encoding", "").lower().endswith("chunked"):
        body = b""
        while size := int(reader.until(b"\r\n").split(b";")[0], 16):
            body += reader.exactly(size)
            reader.exactly(2)
        while line := reader.until(b"\r\n"):
            trailers += fields([line])
    elif "content-length" in named:
        size = int(named["content-length"])
        try:
            body = reader.exactly(size)
        except EOFError:  # the server gave up after the head: what arrived, and where it stopped
            body = reader.rest() + b"<closed before %d bytes>" % size
    else:
        body = reader.rest()
    return status_line.decode("latin-1"), headers, body, trailers


def normalized(status_line: str, headers: list[tuple[str, str]], body: bytes, port: int) -> Response:
    """The response as it is compared: without what differs by nature between two servers.

    - ``date`` and ``server``; the port each server listens on, where a view shows it.
    - ``gzip_page`` (Django's GZipMiddleware) puts 0 to 100 random bytes in each gzip header against BREACH:
      the body is compared unzipped, and its Content-Length is left out.
    """
    named = dict(headers)
    kept = [(name, value) for name, value in headers if name not in IGNORED]
    if named.get("content-encoding") == "gzip":
        body = gzip.decompress(body) if body else body
        kept = [(name, value) for name, value in kept if name != "content-length"]
    body = re.sub(rb'"SERVER_PORT": ("?)%d\b"?' % port, lambda m: b'"SERVER_PORT": "<port%s>"' % (b"" if m[1] else b" as int"), body)
    body = body.replace(b"127.0.0.1:%d" % port, b"127.0.0.1:<port>")
    return Response(status_line, tuple(sorted(kept)), body)


def exchange(port: int, case: Case) -> Answer:
    """Send ``case`` on a new connection and read everything the server answers, bounded by TIMEOUT per read."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        reader = Reader(sock)
        sock.sendall(case.head)
        interim: list[str] = []
        if case.body:
            sock.settimeout(CONTINUE_WAIT)
            with contextlib.suppress(TimeoutError):
                reader.fill()
            sock.settimeout(TIMEOUT)
            if not reader.buffer or reader.buffer.startswith(b"HTTP/1.1 100"):
                sock.sendall(case.body)
        responses = []
        for _ in range(case.head.count(b" HTTP/1.")):
            status_line, headers, body, trailers = read_response(reader, case.method)
            while status_line.split()[1].startswith("1"):
                interim.append(status_line)
                status_line, headers, body, trailers = read_response(reader, case.method)
            responses.append(replace(normalized(status_line, headers, body, port), trailers=tuple(trailers)))
        return Answer(tuple(responses), tuple(interim), then=then(sock, reader))


def then(sock: socket.socket, reader: Reader) -> str:
    """Whether the connection is still open and in step: a further request gets its own answer."""
    try:
        sock.sendall(PROBE)
        status_line, _, body, _ = read_response(reader, "GET")
    except (EOFError, ConnectionError):
        return "closed"
    if status_line.split()[1] == "418" and body == b"I'm a teapot\n" and not reader.buffer:
        return "open"
    return f"out of step: {status_line} {body[:100]!r} {reader.buffer[:100]!r}"


# The comparison

CASES = cases()


def params() -> list[Any]:
    out = []
    for server in COMPARED:
        for case in CASES:
            if case.root_path == bool(BY_NAME[server].root_path):
                out.append(pytest.param(server, case, id=f"{server}:{case.name}"))
    return out


@pytest.fixture(scope="module")
def references() -> dict[tuple[str, str], Answer]:
    """Each reference's answer to each case, asked once."""
    return {}


@pytest.mark.parametrize(("server", "case"), params())
def test_answers_as_the_reference(
    ports: dict[str, int], references: dict[tuple[str, str], Answer], server: str, case: Case
) -> None:
    reference = COMPARED[server]
    if (reference, case.name) not in references:
        references[reference, case.name] = exchange(ports[reference], case)
    assert exchange(ports[server], case) == references[reference, case.name]
