"""The presets against the reference, request by request.

One table of requests, written as raw bytes so that the test controls their framing (chunked bodies,
``Expect: 100-continue``, ``HEAD``, pipelining), goes to the reference and to every djserve interface
serving the same fresh project. Each answer must have the reference's status line, header set (``date``
and ``server`` aside) and body bytes, and leave the connection as the reference does, unless a
documented exception (``DELIBERATE``) says why ours differs and what ours is instead.

- The reference for ``asgi``, ``hybrid`` and ``auto`` is ``uvicorn mysite.asgi:application``; for ``wsgi``,
  ``uvicorn mysite.wsgi:application --interface wsgi``. Their flags are those ``djserve command`` prints
  for ``--preset default``, with the project's app and uvicorn's own protocol in place of djserve's, so
  the interface is the only difference. No preset adds response headers of its own (the security
  headers both sides send are Django's ``SecurityMiddleware``'s), so there is no exception for them.
- The wrapped project's ``asgi.py`` wraps Django's handler in a middleware that adds ``x-wrapped`` and
  mounts a plain ASGI app at ``/sub/``: ``auto`` must serve it through that app, as the reference does.
- ``uvicorn --interface wsgi`` serves through uvicorn's own (deprecated) WSGI middleware, as a2wsgi is not
  installed. Where it is wrong against PEP 3333 or the RFCs, ours is compared with the ASGI reference.
- The echo views answer, as JSON, what a view sees of the request (``request.META``, the parsed query,
  form, files and cookies, the body's hash): the exceptions edit that JSON, key by key.
- A difference that is a bug, being fixed in another change, is marked ``xfail(strict=True)`` with its
  cause, so that it fails once fixed; none is known today.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import json
import re
import shlex
import shutil
import socket
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from http import HTTPStatus
from pathlib import Path
from typing import Any

import pytest

from djserve.config.uvicorn_args import FACTORY, HTTP_PROTOCOLS

from conftest import Server, djserve, free_port, printed_command, start

PROJECT = Path(__file__).parent / "projects" / "differential"
SETTINGS = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
HOST = "testserver"
ROOT_PATH = "/api"
SETTINGS_PY = f"""
DEBUG = False  # Django's error pages without tracebacks, addresses and timings
ALLOWED_HOSTS = [{HOST!r}, "127.0.0.1"]
DATA_UPLOAD_MAX_MEMORY_SIZE = 64 * 1024
"""


# The servers


@dataclass(frozen=True)
class Target:
    """A server: a reference (uvicorn on the project's app, given ``interface``) or djserve with ``interface``."""

    name: str
    interface: str
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
    Target("auto", "auto"),
    Target("auto-wrapped", "auto", wrapped=True),
    # Under a root path, hybrid covers both of djserve's paths: sync views on the WSGI bridge, async on the ASGI app.
    Target("hybrid@api", "hybrid", root_path=ROOT_PATH),
    Target("wsgi@api", "wsgi", root_path=ROOT_PATH),
]
BY_NAME = {target.name: target for target in TARGETS}
# Each djserve server, and the reference it is compared with.
COMPARED = {
    "asgi": "uvicorn",
    "wsgi": "uvicorn-wsgi",
    "hybrid": "uvicorn",
    "auto": "uvicorn",
    "auto-wrapped": "uvicorn-wrapped",
    "hybrid@api": "uvicorn@api",
    "wsgi@api": "uvicorn-wsgi@api",
}


def make_project(root: Path, *, wrapped: bool) -> Path:
    """The stock startproject with the differential views, and for ``wrapped`` the wrapping asgi.py."""
    site = root / ("wrapped" if wrapped else "plain")
    shutil.copytree(root / "stock", site)
    package = site / "mysite"
    shutil.copy(PROJECT / "views.py", package / "views.py")
    (package / "data").mkdir()
    (package / "data" / "data.bin").write_bytes(bytes(range(256)) * 1200)  # 300 KiB: several reads
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
    """What ``djserve command`` prints for the default preset, serving the project's app on uvicorn's protocol."""
    args = ["--preset", "default", "--host", "127.0.0.1", "--port", str(port), *root_path_args(target)]
    printed = djserve("command", *args, cwd=site, env=SETTINGS)
    assert printed.code == 0, printed.err
    argv = shlex.split(printed.out)
    argv = argv[argv.index("uvicorn") :]  # the variables before it are djserve's hand-off to its workers
    protocols = {path: name for name, path in HTTP_PROTOCOLS.items()}
    argv = [protocols.get(word, word) for word in argv if word != "--factory"]
    argv[argv.index(FACTORY)] = f"mysite.{target.interface}:application"
    argv[argv.index("--interface") + 1] = "wsgi" if target.interface == "wsgi" else "asgi3"
    return shlex.join(argv)


def launch(target: Target, site: Path, stack: contextlib.ExitStack) -> int:
    """Start ``target`` serving ``site``, to be stopped when ``stack`` closes; its port, once it answers."""
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
    server.process.wait(timeout=20)


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
    """One request, as bytes. ``body``, if any, is sent once the server answers ``100 Continue``."""

    name: str
    head: bytes
    body: bytes = b""
    content: bytes = b""  # the body as a view reads it: without its chunked framing
    root_path: bool = False  # sent to the servers started with ROOT_PATH

    @property
    def method(self) -> str:
        return self.head.split(b" ", 1)[0].decode()

    @property
    def echo(self) -> str | None:
        """``sync`` or ``async`` for a request to the echo views, whose answer is what the view saw."""
        found = re.match(rb"\S+ (?:http://[^/]+)?/echo(-async)?[/? ]", self.head)
        return None if found is None else "async" if found[1] else "sync"

    @property
    def chunked(self) -> bool:
        return b"\r\ntransfer-encoding: chunked\r\n" in self.head.lower()

    @property
    def uploads(self) -> bool:
        return b"multipart/form-data" in self.head


def case(
    name: str,
    method: str,
    target: str | bytes,
    *fields: str | tuple[str, str | bytes],
    body: bytes = b"",
    chunks: list[bytes] | None = None,
    trailers: str = "",
    version: str = "HTTP/1.1",
    expect: bool = False,
) -> Case:
    """A request: ``Host`` first (unless a field names it), ``fields``, then its framing and body.

    A str field is a line as is; a pair is ``name: value``. ``body`` gets a Content-Length unless a field
    frames it; ``chunks`` are sent chunked, then ``trailers``. With ``expect`` the body waits for 100 Continue.
    """
    path = target if isinstance(target, bytes) else target.encode()
    lines = [b"%s %s %s" % (method.encode(), path, version.encode())]
    named = {(f[0] if isinstance(f, tuple) else f.split(":")[0]).lower() for f in fields}
    if "host" not in named:
        lines.append(b"Host: " + HOST.encode())
    lines += [field_line(f) for f in fields]
    if expect:
        lines.append(b"Expect: 100-continue")
    if chunks is not None:
        lines.append(b"Transfer-Encoding: chunked")
        payload = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in chunks) + b"0\r\n" + trailers.encode() + b"\r\n"
        body = b"".join(chunks)
    else:
        if body and not {"content-length", "transfer-encoding"} & named:
            lines.append(b"Content-Length: %d" % len(body))
        payload = body
    head = b"\r\n".join(lines) + b"\r\n\r\n"
    if expect:
        return Case(name, head, payload, body)
    return Case(name, head + payload, content=body)


def field_line(field: str | tuple[str, str | bytes]) -> bytes:
    if isinstance(field, str):
        return field.encode()
    name, value = field
    return name.encode() + b": " + (value if isinstance(value, bytes) else value.encode())


def multipart(*parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (name, filename or None, content) parts."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "\r\nContent-Type: application/octet-stream" if filename else ""
        out += f"--{BOUNDARY}\r\nContent-Disposition: {disposition}{kind}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{BOUNDARY}--\r\n".encode()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


FORM = ("Content-Type", "application/x-www-form-urlencoded")
FORM_BODY = b"a=1&a=2&b=caf%C3%A9&c=&d=x+y"
BOUNDARY = "differential-boundary"
UPLOAD = ("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
FILES = [("a.bin", bytes(range(256)) * 40), ("b.txt", b"second file\n")]
UPLOAD_BODY = multipart(("title", None, "résumé".encode()), *(("file", name, content) for name, content in FILES))
# What the echo view sees of UPLOAD_BODY.
UPLOADED = {
    "POST": {"title": ["résumé"]},
    "FILES": {
        "file": [
            {"content_type": "application/octet-stream", "name": name, "sha256": sha256(data), "size": len(data)}
            for name, data in FILES
        ]
    },
}
LARGE_UPLOAD = multipart(("file", "large.bin", bytes(range(256)) * 6000))  # 1.5 MB: spooled to disk
OCTETS = ("Content-Type", "application/octet-stream")
OVER_LIMIT = 80 * 1024  # DATA_UPLOAD_MAX_MEMORY_SIZE is 64 KiB
CHUNKS = [b"first ", b"second ", b"x" * 5000]


def echo_cases() -> list[Case]:
    """Request shapes, each sent to the sync and to the async echo view."""
    cases = []
    for suffix in ("", "-async"):
        echo = f"/echo{suffix}"
        cases += [
            case(f"get{suffix}", "GET", echo),
            case(f"options{suffix}", "OPTIONS", echo),
            case(f"unknown-method{suffix}", "PURGE", echo),
            case(f"form-post{suffix}", "POST", echo + "?a=0", FORM, body=FORM_BODY),
            case(f"empty-post{suffix}", "POST", echo, FORM, "Content-Length: 0"),
            case(f"post-without-content-type{suffix}", "POST", echo, body=b"abc"),
            case(f"multipart{suffix}", "POST", echo, UPLOAD, body=UPLOAD_BODY),
            case(f"multipart-large{suffix}", "POST", echo, UPLOAD, body=LARGE_UPLOAD),
            case(f"form-over-limit{suffix}", "POST", echo, FORM, body=b"a=" + b"x" * OVER_LIMIT),
            case(f"raw-over-limit{suffix}", "POST", echo, OCTETS, body=b"x" * OVER_LIMIT),
            case(f"chunked{suffix}", "POST", echo, OCTETS, chunks=CHUNKS),
            case(f"chunked-form{suffix}", "PUT", echo, FORM, chunks=[FORM_BODY[:5], FORM_BODY[5:]]),
            case(f"chunked-multipart{suffix}", "POST", echo, UPLOAD, chunks=[UPLOAD_BODY[:300], UPLOAD_BODY[300:]]),
            case(f"chunked-over-limit{suffix}", "POST", echo, FORM, chunks=[b"a=" + b"x" * OVER_LIMIT]),
            case(f"expect-continue{suffix}", "POST", echo, FORM, body=FORM_BODY, expect=True),
            case(f"expect-continue-chunked{suffix}", "POST", echo, OCTETS, chunks=[b"hello"], expect=True),
            case(f"percent-encoded-path{suffix}", "GET", f"{echo}/a%20b/caf%C3%A9/%E2%82%AC"),
            case(f"encoded-slash{suffix}", "GET", f"{echo}/a%2Fb/%3F%23"),
            case(f"raw-utf8-path{suffix}", "GET", f"{echo}/café/€".encode()),
            case(f"not-utf8-path{suffix}", "GET", f"{echo}/%FF%FE"),
            case(f"dot-segments{suffix}", "GET", f"{echo}/a/%2E%2E/b"),
            case(f"repeated-query-keys{suffix}", "GET", f"{echo}?a=1&a=2&b=caf%C3%A9&c&d=x+y&e=%FF"),
            case(f"raw-utf8-query{suffix}", "GET", f"{echo}?q=café".encode()),
            case(f"empty-query{suffix}", "GET", f"{echo}?"),
            case(
                f"meta-headers{suffix}",
                "GET",
                echo,
                ("X-Multi", "one"),
                ("X-Multi", "two"),
                ("Cookie", "a=1; b=2"),
                ("Cookie", "c=3"),
                ("Accept-Language", "fr-CH, fr;q=0.9"),
                ("x-lower-case", "v"),
                ("X-Latin-1", "caf\xe9".encode("latin-1")),
                ("X-Empty", ""),
                ("X-Spaces", "  padded  "),
            ),
            case(f"underscore-header{suffix}", "GET", echo, ("X-Custom", "real"), ("X_Custom", "spoofed")),
            case(
                f"content-type-charset{suffix}",
                "POST",
                echo,
                ("Content-Type", "text/plain; charset=latin-1"),
                body="caf\xe9".encode("latin-1"),
            ),
            # uvicorn trusts these from 127.0.0.1 by default (the default preset keeps it).
            case(
                f"proxy-headers{suffix}",
                "GET",
                echo,
                ("X-Forwarded-For", "203.0.113.7, 10.0.0.1"),
                ("X-Forwarded-Proto", "https"),
            ),
            case(f"host-with-port{suffix}", "GET", echo, ("Host", f"{HOST}:8080")),
            case(f"disallowed-host{suffix}", "GET", echo, ("Host", "evil.example")),
            case(f"http-1.0{suffix}", "GET", echo, version="HTTP/1.0"),
            Case(f"http-1.0-no-host{suffix}", b"GET %s HTTP/1.0\r\n\r\n" % echo.encode()),
            case(f"connection-close{suffix}", "GET", echo, "Connection: close"),
        ]
    return cases


def view_cases() -> list[Case]:
    """One request or a few to each kind of view."""
    return [
        case("stream", "GET", "/stream"),
        case("stream-async", "GET", "/stream-async"),
        case("head-stream", "HEAD", "/stream"),
        case("head-stream-async", "HEAD", "/stream-async"),
        case("error", "GET", "/error"),
        case("error-async", "GET", "/error-async"),
        case("file", "GET", "/file"),
        case("file-range", "GET", "/file", ("Range", "bytes=0-99")),
        case("file-suffix-range", "GET", "/file", ("Range", "bytes=-10")),
        case("head-file", "HEAD", "/file"),
        case("attachment", "GET", "/attachment"),
        case("conditional", "GET", "/conditional"),
        case("conditional-etag", "GET", "/conditional", ("If-None-Match", '"v1"')),
        case("conditional-etag-head", "HEAD", "/conditional", ("If-None-Match", '"v1"')),
        case("conditional-since", "GET", "/conditional", ("If-Modified-Since", "Tue, 02 Jan 2024 00:00:00 GMT")),
        case("conditional-stale", "GET", "/conditional", ("If-None-Match", '"v0"')),
        case("conditional-if-match", "PUT", "/conditional", ("If-Match", '"v2"'), body=b"x"),
        case("redirect", "GET", "/redirect"),
        case("redirect-elsewhere", "GET", "/redirect-elsewhere"),
        case("append-slash", "GET", "/slash/caf%C3%A9?x=%C3%A9"),
        case("append-slash-post", "POST", "/slash/name", FORM, body=FORM_BODY),
        case("no-content", "GET", "/no-content"),
        case("teapot", "GET", "/teapot"),
        case("head-teapot", "HEAD", "/teapot"),
        case("gzip", "GET", "/gzip", ("Accept-Encoding", "gzip, deflate")),
        case("gzip-identity", "GET", "/gzip"),
        case("gzip-stream", "GET", "/gzip-stream", ("Accept-Encoding", "gzip")),
        case("head-gzip", "HEAD", "/gzip", ("Accept-Encoding", "gzip")),
        case("cookies", "GET", "/cookies"),
        case("headers", "GET", "/headers"),
        case("length-over", "GET", "/length-over"),
        case("length-under", "GET", "/length-under"),
        case("not-found", "GET", "/missing"),
        case("not-found-raised", "GET", "/not-found"),
        case("head-not-found", "HEAD", "/missing"),
        case("big", "GET", "/big"),
        case("head-big", "HEAD", "/big"),
        case("class-get", "GET", "/resource"),
        case("class-head", "HEAD", "/resource"),
        case("class-post", "POST", "/resource", FORM, body=FORM_BODY),
        case("class-options", "OPTIONS", "/resource"),
        case("class-not-allowed", "PUT", "/resource", body=b"x"),
        case("async-class-head", "HEAD", "/resource-async"),
        case("async-class-options", "OPTIONS", "/resource-async"),
        case("async-class-delete", "DELETE", "/resource-async"),
        case("async-class-not-allowed", "POST", "/resource-async", FORM, body=FORM_BODY),
        case("mounted", "GET", "/sub/x?y=1"),
        case("mounted-prefix-only", "GET", "/subway"),
    ]


def framing_cases() -> list[Case]:
    """Request shapes whose handling is the HTTP parser's (djserve.serve.protocols, uvicorn's protocols)."""
    chunk_extension = b"5;name=value\r\nhello\r\n0\r\n\r\n"
    return [
        case("absolute-form", "GET", f"http://{HOST}/echo?a=1"),
        case("absolute-form-other-host", "GET", "http://other.example/echo"),
        case("asterisk-options", "OPTIONS", "*"),
        case("duplicate-host", "GET", "/echo", ("Host", HOST), ("Host", "evil.example")),
        case("space-before-colon", "GET", "/echo", "X-Spaced : value"),
        case("content-length-and-chunked", "POST", "/echo", OCTETS, ("Content-Length", "3"), chunks=[b"hello"]),
        case(
            "duplicate-content-length", "POST", "/echo", OCTETS, "Content-Length: 5", "Content-Length: 5", body=b"hello"
        ),
        case("chunked-trailers", "POST", "/echo", OCTETS, "Trailer: X-Sum", chunks=[b"hello"], trailers="X-Sum: 5\r\n"),
        replace(
            case("chunk-extension", "POST", "/echo", OCTETS, "Transfer-Encoding: chunked", body=chunk_extension),
            content=b"hello",
        ),
        case("lowercase-method", "get", "/echo"),
        Case("pipelined", b"".join(case("", "GET", path).head for path in ("/teapot", "/stream", "/resource"))),
    ]


def root_path_cases(cases: list[Case]) -> list[Case]:
    """Requests that show what a root path changes, sent to the servers started with one."""
    shown = {
        "get", "get-async", "percent-encoded-path", "percent-encoded-path-async", "form-post", "form-post-async",
        "redirect", "append-slash", "not-found", "mounted", "head-file",
    }  # fmt: skip
    under = [replace(c, name=f"root-path-{c.name}", root_path=True) for c in cases if c.name in shown]
    prefixed = [case(f"root-path-prefixed{suffix}", "GET", f"{ROOT_PATH}/echo{suffix}") for suffix in ("", "-async")]
    return under + [replace(c, root_path=True) for c in prefixed]


CASES = echo_cases() + view_cases() + framing_cases()
CASES += root_path_cases(CASES)


# The answers

# How long a client that sent ``Expect: 100-continue`` waits for it before sending its body anyway (curl: 1 s).
CONTINUE_WAIT = 2.0
TIMEOUT = 10.0  # for each read
# Sent after the answer: the connection is still open and in step if this gets its own answer.
PROBE = case("", "GET", "/teapot").head
# Fields every server sets to its own value.
IGNORED = frozenset({"date", "server"})


@dataclass(frozen=True)
class Response:
    status_line: str
    # Names lowercased (RFC 9110 §5.1: they are case-insensitive), sorted; IGNORED left out.
    headers: tuple[tuple[str, str], ...]
    body: bytes
    trailers: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class Answer:
    """All a client sees of one case: interim answers, the response to each request, and the connection after."""

    responses: tuple[Response, ...]
    interim: tuple[str, ...] = ()
    then: str = "open"  # "open", "closed", or what the next request got instead of its answer


class Reader:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buffer = b""

    def fill(self) -> None:
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            wait = self.sock.gettimeout()
            raise TimeoutError(f"no further byte within {wait:g} s; unparsed: {self.buffer[:200]!r}") from None
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
    """One response, framed as RFC 9112 §6.3 says; a body cut short ends with a marker of where it stopped."""
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
        except EOFError:
            body = reader.rest() + b"<closed before %d bytes>" % size
    else:
        body = reader.rest()
    return status_line.decode("latin-1"), headers, body, trailers


def normalized(status_line: str, headers: list[tuple[str, str]], body: bytes, port: int) -> Response:
    """The response as it is compared, without what differs by nature between two servers.

    - ``date`` and ``server``; the port each server listens on, where a view shows it.
    - ``gzip_page`` (Django's GZipMiddleware) puts 0 to 100 random bytes in each gzip header against BREACH:
      the body is compared unzipped, and its Content-Length is left out.
    """
    kept = [(name, value) for name, value in headers if name not in IGNORED]
    if dict(headers).get("content-encoding") == "gzip":
        body = gzip.decompress(body) if body else body
        kept = [(name, value) for name, value in kept if name != "content-length"]
    response = Response(status_line, tuple(sorted(kept)), body)
    shown = re.sub(rb'"SERVER_PORT": ("?)%d\b"?' % port, port_shown, body)
    return with_body(response, shown.replace(b"127.0.0.1:%d" % port, b"127.0.0.1:<port>"))


def port_shown(found: re.Match[bytes]) -> bytes:
    """The echo view's SERVER_PORT, as the same text for every server, keeping whether it was a string."""
    return b'"SERVER_PORT": "<port>"' if found[1] else b'"SERVER_PORT": "<port as int>"'


def with_body(response: Response, body: bytes) -> Response:
    """``response`` with another body, and a Content-Length changed by as much."""
    grown = len(body) - len(response.body)
    headers = tuple((n, str(int(v) + grown) if n == "content-length" else v) for n, v in response.headers)
    return replace(response, headers=headers, body=body)


def exchange(port: int, request: Case) -> Answer:
    """Send ``request`` on a new connection and read all the server answers; every read is bounded by TIMEOUT."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
        reader = Reader(sock)
        sock.sendall(request.head)
        if request.body:
            sock.settimeout(CONTINUE_WAIT)
            with contextlib.suppress(TimeoutError):
                reader.fill()
            sock.settimeout(TIMEOUT)
            if not reader.buffer or reader.buffer.startswith(b"HTTP/1.1 100 "):
                sock.sendall(request.body)
        interim: list[str] = []
        responses = []
        for _ in range(request.head.count(b" HTTP/1.")):
            status_line, headers, body, trailers = read_response(reader, request.method)
            while status_line.split()[1].startswith("1"):
                interim.append(status_line)
                status_line, headers, body, trailers = read_response(reader, request.method)
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


# The documented exceptions

Seen = dict[str, Any]  # what the echo view saw, as it answers it
HYBRID = frozenset({"hybrid", "hybrid@api", "auto"})
WSGI = frozenset({"wsgi", "wsgi@api"})


def bridged(server: str, sent: Case) -> bool:
    """Whether djserve serves ``sent`` through Django's WSGI handler on its WSGI bridge (``djserve.app.wsgi``)."""
    return server in WSGI or (server in HYBRID and sent.echo == "sync")


def seen_as_wsgi(server: str, sent: Case, reference: Target) -> bool:
    """An echo view under Django's WSGI handler, compared with what it saw under Django's ASGI handler."""
    return bridged(server, sent) and sent.echo is not None and reference.interface == "asgi"


@dataclass(frozen=True)
class Deliberate:
    """Where ours differs from the reference and is right; ``reason`` says by what."""

    reason: str
    applies: Callable[[str, Case, Target], bool]  # (djserve server, request, the reference it is compared with)
    seen: Callable[[Seen, Case], None] | None = None  # edits the reference's echo answer into ours
    instead: bool = False  # the reference is wrong as a whole: compare with Django's ASGI handler under uvicorn
    as_if: Case | None = None  # ours answers as the reference answers this request
    refused: HTTPStatus | None = None  # ours refuses the request itself, with this status, and closes


def url_scheme(seen: Seen, sent: Case) -> None:
    seen["meta"]["wsgi.url_scheme"] = seen["scheme"]


def content_length(seen: Seen, sent: Case) -> None:
    seen["meta"]["CONTENT_LENGTH"] = str(len(sent.content))


def uploaded(seen: Seen, sent: Case) -> None:
    seen.update(UPLOADED)


def port_as_text(seen: Seen, sent: Case) -> None:
    seen["meta"]["SERVER_PORT"] = "<port>"


def joined(seen: Seen, sent: Case) -> None:
    seen["headers"].update(HTTP_X_MULTI="one, two", HTTP_COOKIE="a=1; b=2; c=3")
    seen["COOKIES"] = {"a": "1", "b": "2", "c": "3"}


def underscore_dropped(seen: Seen, sent: Case) -> None:
    seen["headers"]["HTTP_X_CUSTOM"] = "real"


def trimmed(seen: Seen, sent: Case) -> None:
    seen["headers"]["HTTP_X_SPACES"] = "padded"


def trailers_dropped(seen: Seen, sent: Case) -> None:
    del seen["headers"]["HTTP_X_SUM"]


def path_bytes_kept(seen: Seen, sent: Case) -> None:
    for key in ("path", "path_info"):
        seen[key] = seen[key].replace("\ufffd\ufffd", "%FF%FE")
    seen["meta"]["PATH_INFO"] = seen["path_info"]
    for key in ("full_path", "absolute_uri"):
        seen[key] = seen[key].replace("%EF%BF%BD%EF%BF%BD", "%25FF%25FE")


DELIBERATE = [
    Deliberate(
        "PEP 3333: the environ has wsgi.url_scheme. A view under Django's WSGI handler (hybrid's sync views) sees "
        "the environ in request.META; under its ASGI handler META has no wsgi.* keys but two (README: How "
        "requests are routed).",
        seen_as_wsgi,
        url_scheme,
    ),
    Deliberate(
        "RFC 3875 §4.1.2 (CGI, which PEP 3333 keeps): CONTENT_LENGTH is the body's length once its transfer coding "
        "is removed. Django's WSGI handler reads no more than CONTENT_LENGTH; its ASGI handler leaves it unset.",
        lambda server, sent, reference: seen_as_wsgi(server, sent, reference) and sent.chunked,
        content_length,
    ),
    Deliberate(
        "RFC 9112 §7.1: a chunked body is the request's content. Django's ASGI handler parses no multipart body "
        "without a Content-Length (MultiPartParser reads length 0): a chunked upload's fields and files are "
        "dropped. Told the length, its WSGI handler parses them.",
        lambda server, sent, reference: seen_as_wsgi(server, sent, reference) and sent.chunked and sent.uploads,
        uploaded,
    ),
    Deliberate(
        "RFC 9112 §7.1, RFC 3875 §4.1.2: uvicorn's WSGI middleware gives a chunked body no CONTENT_LENGTH, so "
        "Django's WSGI handler reads an empty body and form (and never sees one over its limits). Ours reads "
        "what Django's ASGI handler reads.",
        lambda server, sent, reference: server in WSGI and sent.chunked,
        instead=True,
    ),
    Deliberate(
        "PEP 3333: header values are latin-1 strings. uvicorn's WSGI middleware encodes them as ASCII, so a view "
        "that sets 'X-Latin-1: café' gets a 500 and a closed connection. Ours is the ASGI handler's answer.",
        lambda server, sent, reference: server in WSGI and sent.name == "headers",
        instead=True,
    ),
    Deliberate(
        "PEP 3333: CGI variables are native strings; uvicorn's WSGI middleware gives SERVER_PORT as an int.",
        lambda server, sent, reference: server in WSGI and reference.interface == "wsgi",
        port_as_text,
    ),
    Deliberate(
        "RFC 9110 §5.3: repeated field lines are combined with comma SP; both references join with a bare comma. "
        "Cookie lines are joined with '; ' (RFC 9113 §8.2.3, RFC 6265 §5.4): joined with ',' the second line's "
        "cookie is lost in the first's last value (b='2,c=3'). README: How requests are routed.",
        lambda server, sent, reference: bridged(server, sent) and sent.name.startswith("meta-headers"),
        joined,
    ),
    Deliberate(
        "A header name with '_' would pass for one with '-' (X_Custom for X-Custom): uvicorn's WSGI middleware "
        "passes it, djserve drops it as Django's ASGI handler (the other reference), runserver and gunicorn do.",
        lambda server, sent, reference: server in WSGI and sent.name.startswith("underscore-header"),
        underscore_dropped,
    ),
    Deliberate(
        "PEP 3333: PATH_INFO carries the path's bytes (as latin-1), so Django's WSGI handler keeps bytes that are "
        "not UTF-8 percent-encoded (repercent_broken_unicode); the references replace them with U+FFFD first.",
        lambda server, sent, reference: bridged(server, sent) and sent.name.startswith("not-utf8-path"),
        path_bytes_kept,
    ),
    Deliberate(
        "PEP 3333 and RFC 9112 §6.3: a body longer than the Content-Length the app set is cut to that length, as "
        "gunicorn and wsgiref do, and the connection stays usable; the references send the headers, then close "
        "with no byte of the body, so a stale Content-Length from a middleware becomes a broken download.",
        lambda server, sent, reference: server in WSGI | HYBRID and sent.name == "length-over",  # a sync view
        as_if=case("length-exact", "GET", "/length-exact"),
    ),
    Deliberate(
        "RFC 9112 §5.1: whitespace around a field value is not part of it; httptools keeps the trailing part.",
        lambda server, sent, reference: sent.name.startswith("meta-headers"),
        trimmed,
    ),
    Deliberate(
        "RFC 9110 §6.5.1: trailer fields are never merged into the header section. The references hand them to "
        "the view as headers, so a client could send Host or X-Remote-User after the body.",
        lambda server, sent, reference: sent.name == "chunked-trailers",
        trailers_dropped,
    ),
    Deliberate(
        "RFC 9112 §3.2.2: with the absolute form, the target's authority is the request's host and Host is "
        "ignored; the references keep Host. Ours answers as they do when other.example is the Host.",
        lambda server, sent, reference: sent.name == "absolute-form-other-host",
        as_if=case("absolute-form-as-origin-form", "GET", "/echo", ("Host", "other.example")),
    ),
    Deliberate(
        "RFC 9112 §3.2: a server responds 400 to a request with more than one Host field. The references join "
        "them and leave the refusal to ALLOWED_HOSTS, which a project that allows both names never makes.",
        lambda server, sent, reference: sent.name == "duplicate-host",
        refused=HTTPStatus.BAD_REQUEST,
    ),
]

# The ASGI reference for each root path: where the WSGI one is wrong as a whole, ours is compared with it.
ASGI_REFERENCE = {t.root_path: t for t in TARGETS if t.reference and t.interface == "asgi" and not t.wrapped}


def reference_for(server: str, sent: Case) -> Target:
    reference = BY_NAME[COMPARED[server]]
    if any(d.instead and d.applies(server, sent, reference) for d in DELIBERATE):
        return ASGI_REFERENCE[reference.root_path]
    return reference


def edited(response: Response, sent: Case, edits: list[Callable[[Seen, Case], None]]) -> Response:
    """``response`` with its echo JSON edited, and its Content-Length with it."""
    try:
        seen = json.loads(response.body)
    except ValueError:
        return response
    for edit in edits:
        edit(seen, sent)
    return with_body(response, json.dumps(seen, sort_keys=True, indent=1).encode())  # as the echo view writes it


def refusal(status: HTTPStatus) -> Answer:
    """djserve's own refusal of a request it will not pass on: plain text, then the connection closes."""
    body = f"{status.phrase}\n".encode()
    headers = (
        ("connection", "close"),
        ("content-length", str(len(body))),
        ("content-type", "text/plain; charset=utf-8"),
    )
    return Answer((Response(f"HTTP/1.1 {status.value} {status.phrase}", headers, body),), then="closed")


def expected(server: str, sent: Case, answers: Callable[[Target, Case], Answer]) -> Answer:
    """The reference's answer to ``sent``, or the ASGI reference's, with the edits that apply to ``server``."""
    reference = reference_for(server, sent)
    applied = [d for d in DELIBERATE if d.applies(server, sent, reference)]
    for deliberate in applied:
        if deliberate.refused is not None:
            return refusal(deliberate.refused)
    edits = [d.seen for d in applied if d.seen is not None]
    found = answers(reference, next((d.as_if for d in applied if d.as_if is not None), sent))
    return replace(found, responses=tuple(edited(r, sent, edits) for r in found.responses))


# The comparison


def params() -> list[Any]:
    found = []
    for server in COMPARED:
        for sent in CASES:
            if sent.root_path == bool(BY_NAME[server].root_path):
                found.append(pytest.param(server, sent, id=f"{server}:{sent.name}"))
    return found


@pytest.fixture(scope="module")
def answers(ports: dict[str, int]) -> Callable[[Target, Case], Answer]:
    """A reference's answer to a request, asked once."""
    asked: dict[tuple[str, str], Answer] = {}

    def answer(reference: Target, sent: Case) -> Answer:
        if (reference.name, sent.name) not in asked:
            asked[reference.name, sent.name] = exchange(ports[reference.name], sent)
        return asked[reference.name, sent.name]

    return answer


@pytest.mark.parametrize(("server", "sent"), params())
def test_answers_as_the_reference(
    ports: dict[str, int], answers: Callable[[Target, Case], Answer], server: str, sent: Case
) -> None:
    assert exchange(ports[server], sent) == expected(server, sent, answers)


def test_every_exception_applies_to_a_request() -> None:
    for deliberate in DELIBERATE:
        assert any(
            deliberate.applies(server, sent, BY_NAME[COMPARED[server]]) for server in COMPARED for sent in CASES
        ), deliberate.reason


def test_the_wrapped_projects_reference_answers_through_its_asgi_app(
    answers: Callable[[Target, Case], Answer],
) -> None:
    """So that auto-wrapped's agreement with it shows the wrapper at work: the header, and the mounted app."""
    by_name = {sent.name: sent for sent in CASES}
    wrapped = BY_NAME["uvicorn-wrapped"]
    (response,) = answers(wrapped, by_name["get"]).responses
    assert ("x-wrapped", "yes") in response.headers
    (response,) = answers(wrapped, by_name["mounted"]).responses
    assert response.body == b"mounted app: path=/sub/x root_path=\n"
