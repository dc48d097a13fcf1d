"""djserve's HTTP protocols driven in-process, as uvicorn's own tests/protocols/test_http.py drives its own.

A mock transport and loop stand for the socket and the event loop: no port, no sleep; the timers are
advanced by hand. Every test runs over both parser classes, which must answer alike. The real-socket
checks of the same limits are in test_hostile.py.

``CASES`` is a corpus of raw requests with the answer djserve gives (gunicorn's tests/requests style),
and ``DIFFERENCES`` lists each case where stock uvicorn answers otherwise, with the reason; a test runs
the corpus against stock uvicorn too, so that the list stays complete and true.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from uvicorn.config import Config
from uvicorn.protocols.http import h11_impl, httptools_impl
from uvicorn.server import ServerState

from djserve.app import capacity
from djserve.handoff import WorkerConfig
from djserve.serve.h11_protocol import H11Protocol
from djserve.serve.httptools_protocol import HttpToolsProtocol
from djserve.serve.protocols import LINGER_SECONDS

pytestmark = pytest.mark.anyio

PROTOCOLS = {"httptools": HttpToolsProtocol, "h11": H11Protocol}
STOCK = {"httptools": httptools_impl.HttpToolsProtocol, "h11": h11_impl.H11Protocol}
# Small limits, so that a test reaches them with a few bytes.
WORKER = WorkerConfig(header_timeout=5.0, max_header_bytes=2048, max_headers=20, max_body_bytes=1000)
App = Callable[[Any, Any, Any], Awaitable[object]]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=list(PROTOCOLS))
def parser(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


# The mock socket and loop


class MockTransport:
    """What the protocol writes, and whether it closed or half-closed (write_eof) the connection.

    As asyncio's, a closed transport tells its protocol the connection is lost at the loop's next turn.
    """

    def __init__(self) -> None:
        self.buffer = b""
        self.closed = False
        self.eof = False
        self.read_paused = False
        self.protocol: Any = None

    def get_extra_info(self, key: str) -> Any:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 8001)}.get(key)

    def write(self, data: bytes) -> None:
        assert not self.eof, "write() after write_eof()"  # asyncio raises here
        if not self.closed:  # asyncio drops what is written after close()
            self.buffer += data

    def write_eof(self) -> None:
        self.eof = True

    def can_write_eof(self) -> bool:
        return True

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            asyncio.get_running_loop().call_soon(self.protocol.connection_lost, None)

    def is_closing(self) -> bool:
        return self.closed

    def pause_reading(self) -> None:
        self.read_paused = True

    def resume_reading(self) -> None:
        self.read_paused = False

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol

    def get_protocol(self) -> Any:
        return self.protocol

    @property
    def open(self) -> bool:
        return not (self.closed or self.eof)


@dataclass
class MockTimer:
    when: float
    callback: Callable[..., object]
    args: tuple[Any, ...]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class MockLoop:
    """Timers fire when the test advances the clock; each request's app runs as a task of the test's loop."""

    now: float = 0.0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    timers: list[MockTimer] = field(default_factory=list)

    def create_task(self, coroutine: Coroutine[Any, Any, None], **kwargs: Any) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coroutine, **kwargs)
        self.tasks.append(task)
        return task

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> MockTimer:
        timer = MockTimer(self.now + delay, callback, args)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for timer in sorted(self.timers, key=lambda t: t.when):
            if timer.when <= self.now and not timer.cancelled:
                self.timers.remove(timer)
                timer.callback(*timer.args)

    async def run_tasks(self) -> None:
        """Run every request's app to its end (bounded, so that a test waiting on nothing fails fast)."""
        with anyio.fail_after(5):
            while pending := [task for task in self.tasks if not task.done()]:
                await asyncio.wait(pending)


def connect(cls: type[Any], app: App, worker: WorkerConfig = WORKER, **config: Any) -> Any:
    """A protocol of class ``cls`` with a connection made; djserve's classes get ``worker``'s limits."""
    loop = MockLoop()
    uvicorn_config = Config(app=app, lifespan="off", log_config=None, **config)
    extra = {"worker": worker} if cls in PROTOCOLS.values() else {}
    protocol = cls(config=uvicorn_config, server_state=ServerState(), app_state={}, _loop=loop, **extra)
    transport = MockTransport()
    transport.set_protocol(protocol)
    protocol.connection_made(transport)
    return protocol


# The app, and reading its answers


async def echo(scope: Any, receive: Any, send: Any) -> None:
    """Answers 200 with the request as it saw it: target, header fields and body."""
    body = b""
    while (message := await receive())["type"] == "http.request":
        body += message["body"]
        if not message.get("more_body"):
            break
    else:
        return  # disconnected
    target = scope["path"] + ("?" + scope["query_string"].decode() if scope["query_string"] else "")
    seen = [target, *(f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in scope["headers"])]
    if body:
        seen.append(f"body: {body.decode('latin-1')}")
    payload = json.dumps(seen).encode()
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(payload))]})
    await send({"type": "http.response.body", "body": payload})


def responses(buffer: bytes) -> list[tuple[int, bytes]]:
    """The status and body of each response in what the server wrote."""
    answers = []
    while buffer:
        head, _, rest = buffer.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        lengths = [int(line.split(b":")[1]) for line in lines if line.lower().startswith(b"content-length:")]
        length = lengths[0] if lengths else len(rest)
        answers.append((int(lines[0].split(b" ")[1]), rest[:length]))
        buffer = rest[length:]
    return answers


def status(protocol: Any) -> int:
    return responses(protocol.transport.buffer)[0][0]


@dataclass(frozen=True)
class Answer:
    """What a client and the operator notice: the first answer, the connection after it, what the app saw."""

    status: int | None  # None: closed without an answer
    keep_alive: bool = False
    seen: tuple[str, ...] = ()  # for a 200: the target, each header field, the body
    errors: tuple[str, ...] = ()  # ERROR log records and exceptions out of the protocol


def served(target: str, *fields: str, body: str = "", keep_alive: bool = True) -> Answer:
    return Answer(200, keep_alive, (target, *fields, *([f"body: {body}"] if body else [])))


def refused(code: int) -> Answer:
    return Answer(code)


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage().splitlines()[0])


async def exchange(cls: type[Any], request: bytes | Sequence[bytes]) -> Answer:
    """Send a request (whole, or in the reads given), run the app, and read the first answer."""
    errors = Errors()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(errors)
    try:
        protocol = connect(cls, echo)
        for data in [request] if isinstance(request, bytes) else request:
            if protocol.transport.closed:
                break  # asyncio reads nothing more from a closed transport
            try:
                protocol.data_received(data)
            except Exception as error:  # a worker would log it with its traceback and drop the connection
                errors.records.append(f"{type(error).__name__} out of data_received")
                break
        await protocol.loop.run_tasks()
        errors.records += [
            f"{type(task.exception()).__name__} out of the request's task"
            for task in protocol.loop.tasks
            if task.exception()
        ]
    finally:
        logger.removeHandler(errors)
    transport = protocol.transport
    answers = responses(transport.buffer)
    if not answers:
        return Answer(None, transport.open, (), tuple(errors.records))
    code, body = answers[0]
    seen = tuple(json.loads(body)) if code == 200 and body.startswith(b"[") else ()
    return Answer(code, transport.open, seen, tuple(errors.records))


# Part A: the corpus


def get(target: bytes, *fields: bytes, method: bytes = b"GET", version: bytes = b"1.1") -> bytes:
    return b"%s %s HTTP/%s\r\n%s\r\n" % (method, target, version, b"".join(field + b"\r\n" for field in fields))


def post(*fields: bytes, body: bytes) -> bytes:
    return get(b"/", b"Host: a.example", *fields, method=b"POST") + body


CHUNKED = b"Transfer-Encoding: chunked"


@dataclass(frozen=True)
class Case:
    request: bytes
    # What djserve answers, with either parser; by parser where they differ and the RFC allows both.
    expected: Answer | dict[str, Answer]

    def answer(self, parser: str) -> Answer:
        return self.expected[parser] if isinstance(self.expected, dict) else self.expected


CASES: dict[str, Case] = {
    # Served as asked
    "origin form": Case(get(b"/p?q=1", b"Host: a.example"), served("/p?q=1", "host: a.example")),
    "content-length body": Case(
        post(b"Content-Length: 3", body=b"abc"), served("/", "host: a.example", "content-length: 3", body="abc")
    ),
    "chunked body": Case(
        post(CHUNKED, body=b"3\r\nabc\r\n0\r\n\r\n"),
        served("/", "host: a.example", "transfer-encoding: chunked", body="abc"),
    ),
    "HTTP/1.0 without Host": Case(get(b"/", version=b"1.0"), served("/", keep_alive=False)),
    "empty Host": Case(get(b"/", b"Host:"), served("/", "host: ")),
    "Host with a port and an IPv6 literal": Case(get(b"/", b"Host: [::1]:8000"), served("/", "host: [::1]:8000")),
    "* for OPTIONS": Case(get(b"*", b"Host: a.example", method=b"OPTIONS"), served("*", "host: a.example")),
    "a path starting with //": Case(
        get(b"//b.example/x", b"Host: a.example"), served("//b.example/x", "host: a.example")
    ),
    # RFC 9110 6.5.1: trailer fields are never merged into the header fields.
    "trailers are discarded": Case(
        post(CHUNKED, body=b"3\r\nabc\r\n0\r\nHost: evil.example\r\nX-Remote-User: admin\r\n\r\n"),
        served("/", "host: a.example", "transfer-encoding: chunked", body="abc"),
    ),
    # RFC 9112 5.1: leading and trailing whitespace is not part of a field value.
    "field values are trimmed": Case(
        get(b"/", b"Host: a.example", b"X-A: \t padded \t "), served("/", "host: a.example", "x-a: padded")
    ),
    # RFC 9112 3.2: exactly one Host, a valid one, in an HTTP/1.1 request.
    "two Host fields": Case(get(b"/", b"Host: a.example", b"Host: b.example"), refused(400)),
    "no Host in HTTP/1.1": Case(get(b"/"), refused(400)),
    "Host that is not a URI host": Case(get(b"/", b"Host: a b"), refused(400)),
    # RFC 9112 3.2.4: the asterisk form is OPTIONS' alone.
    "* for GET": Case(get(b"*", b"Host: a.example"), refused(400)),
    # RFC 9112 3.2.2: the absolute form is served as its origin form, the target's authority as Host.
    "absolute form": Case(
        get(b"http://b.example/path?q=1", b"Host: a.example"), served("/path?q=1", "host: b.example")
    ),
    "absolute form, https with a port": Case(
        get(b"HTTPS://b.example:8443/x", b"Host: a.example"), served("/x", "host: b.example:8443")
    ),
    "absolute form without a path": Case(get(b"http://b.example", b"Host: a.example"), served("/", "host: b.example")),
    "absolute form with userinfo": Case(get(b"http://u:p@b.example/x", b"Host: a.example"), refused(400)),
    "absolute form without a host": Case(get(b"http:///x", b"Host: a.example"), refused(400)),
    # RFC 9112 3.2: targets in no form an origin server accepts.
    "relative target": Case(get(b"path", b"Host: a.example"), refused(400)),
    "authority form for GET": Case(get(b"b.example:80", b"Host: a.example"), refused(400)),
    "CONNECT": Case(get(b"b.example:443", b"Host: b.example:443", method=b"CONNECT"), refused(400)),
    "fragment in the target": Case(get(b"/p#frag", b"Host: a.example"), refused(400)),
    "non-ASCII target": Case(get("/café".encode(), b"Host: a.example"), refused(400)),
    # RFC 9112 6.1 and 6.3: framing that a proxy in front may read otherwise (request smuggling).
    "Content-Length with Transfer-Encoding": Case(
        post(b"Content-Length: 3", CHUNKED, body=b"3\r\nabc\r\n0\r\n\r\n"), refused(400)
    ),
    "chunked not the final coding": Case(
        post(b"Transfer-Encoding: chunked, gzip", body=b"3\r\nabc\r\n0\r\n\r\n"), refused(400)
    ),
    "no chunked coding": Case(post(b"Transfer-Encoding: gzip", body=b"abc"), refused(400)),
    "chunked twice": Case(post(CHUNKED, CHUNKED, body=b"3\r\nabc\r\n0\r\n\r\n"), refused(400)),
    "a coding before chunked": Case(
        post(b"Transfer-Encoding: gzip, chunked", body=b"3\r\nabc\r\n0\r\n\r\n"), refused(400)
    ),
    "Content-Length with a sign": Case(post(b"Content-Length: +3", body=b"abc"), refused(400)),
    "Content-Length in hexadecimal": Case(post(b"Content-Length: 0x3", body=b"abc"), refused(400)),
    "two different Content-Lengths": Case(post(b"Content-Length: 3", b"Content-Length: 4", body=b"abcd"), refused(400)),
    "malformed chunk after the app has the request": Case(post(CHUNKED, body=b"zz\r\nabc\r\n0\r\n\r\n"), refused(400)),
    # RFC 9112 5.1, 2.2: malformed fields.
    "whitespace before the colon": Case(get(b"/", b"Host: a.example", b"X-A : b"), refused(400)),
    "bare CR in a value": Case(get(b"/", b"Host: a.example", b"X-A: b\rc"), refused(400)),
    "NUL in a value": Case(get(b"/", b"Host: a.example", b"X-A: b\x00c"), refused(400)),
    "field without a colon": Case(get(b"/", b"Host: a.example", b"X-A"), refused(400)),
    # The parsers differ here, and the RFCs allow either answer.
    "the same Content-Length twice (RFC 9110 8.6: reject, or read one)": Case(
        post(b"Content-Length: 3", b"Content-Length: 3", body=b"abc"),
        {"httptools": refused(400), "h11": served("/", "host: a.example", "content-length: 3", body="abc")},
    ),
    "obsolete line folding (RFC 9112 5.2: reject, or unfold)": Case(
        get(b"/", b"Host: a.example", b"X-A: b", b" c"),
        {"httptools": refused(400), "h11": served("/", "host: a.example", "x-a: b c")},
    ),
    "bare LF line ends (RFC 9112 2.2: a recipient MAY accept them)": Case(
        b"GET / HTTP/1.1\nHost: a.example\n\n", {"httptools": refused(400), "h11": served("/", "host: a.example")}
    ),
    "two spaces in the request line (RFC 9112 3: MAY parse on whitespace)": Case(
        b"GET  / HTTP/1.1\r\nHost: a.example\r\n\r\n",
        {"httptools": served("/", "host: a.example"), "h11": refused(400)},
    ),
}

# Where stock uvicorn (its own protocol classes) answers a case otherwise, and why djserve's answer is right.
# Per parser: stock uvicorn's answer, or None where it answers as djserve does.
DIFFERENCES: dict[str, tuple[Answer | None, Answer | None, str]] = {
    "trailers are discarded": (
        served(
            "/",
            *("host: a.example", "transfer-encoding: chunked", "host: evil.example", "x-remote-user: admin"),
            body="abc",
        ),
        None,
        "RFC 9110 6.5.1: trailer fields are never merged into the headers; a client set Host or X-Remote-User",
    ),
    "field values are trimmed": (
        served("/", "host: a.example", "x-a: padded \t "),
        None,
        "RFC 9112 5.1: whitespace around a field value is not part of it (h11 trims it too)",
    ),
    "two Host fields": (
        served("/", "host: a.example", "host: b.example"),
        None,
        "RFC 9112 3.2: MUST respond 400 to more than one Host",
    ),
    "no Host in HTTP/1.1": (served("/"), None, "RFC 9112 3.2: MUST respond 400 to an HTTP/1.1 request without Host"),
    "Host that is not a URI host": (
        served("/", "host: a b"),
        served("/", "host: a b"),
        "RFC 9112 3.2: MUST respond 400 to a Host with an invalid value",
    ),
    "* for GET": (
        served("*", "host: a.example"),
        served("*", "host: a.example"),
        "RFC 9112 3.2.4: the asterisk form is only used for OPTIONS",
    ),
    "absolute form": (
        served("/path?q=1", "host: a.example"),
        served("http://b.example/path?q=1", "host: a.example"),
        "RFC 9112 3.2.2: serve the path, and use the target's authority instead of Host",
    ),
    "absolute form, https with a port": (
        served("/x", "host: a.example"),
        served("HTTPS://b.example:8443/x", "host: a.example"),
        "RFC 9112 3.2.2, as above",
    ),
    "absolute form without a path": (
        refused(400),
        served("http://b.example", "host: a.example"),
        "RFC 9112 3.2.1: an empty path is /",
    ),
    "absolute form with userinfo": (
        served("/x", "host: a.example"),
        served("http://u:p@b.example/x", "host: a.example"),
        "RFC 9110 4.2.4: a recipient SHOULD treat userinfo in an http URI as an error",
    ),
    "absolute form without a host": (
        None,
        served("http:///x", "host: a.example"),
        "RFC 9110 4.2.1: a recipient MUST reject an http URI with an empty host as invalid",
    ),
    "relative target": (
        None,
        served("path", "host: a.example"),
        "RFC 9112 3.2: not a request target; SHOULD answer 400 (httptools does)",
    ),
    "authority form for GET": (
        None,
        served("b.example:80", "host: a.example"),
        "RFC 9112 3.2.3: the authority form is CONNECT's alone",
    ),
    "CONNECT": (
        None,
        Answer(200, False, (), ("Exception in ASGI application",)),
        "RFC 9112 3.2.3: CONNECT is for proxies; h11 switched protocols, then the app's response body raised",
    ),
    "fragment in the target": (
        served("/p", "host: a.example"),
        served("/p#frag", "host: a.example"),
        "RFC 9112 3.2: a request target has no fragment; SHOULD answer 400",
    ),
    "Content-Length with Transfer-Encoding": (
        None,
        served("/", "host: a.example", "content-length: 3", "transfer-encoding: chunked", body="abc"),
        "RFC 9112 6.1: reject, or at least close after answering: a request-smuggling vector",
    ),
    "a coding before chunked": (
        served("/", "host: a.example", "transfer-encoding: gzip, chunked", body="abc"),
        None,
        "RFC 9112 6.1: a coding the server does not apply (the app got gzip as if plain); h11 answers 400",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_each_request_gets_its_answer(parser: str, case: str) -> None:
    assert await exchange(PROTOCOLS[parser], CASES[case].request) == CASES[case].answer(parser)


@pytest.mark.parametrize("case", list(CASES))
async def test_the_answer_does_not_depend_on_how_the_request_is_split_into_reads(parser: str, case: str) -> None:
    request = CASES[case].request
    reads = [request[i : i + 1] for i in range(len(request))]
    assert await exchange(PROTOCOLS[parser], reads) == CASES[case].answer(parser)


@pytest.mark.parametrize("case", list(CASES))
async def test_stock_uvicorn_differs_only_where_listed(parser: str, case: str) -> None:
    stock = DIFFERENCES.get(case, (None, None, ""))[list(PROTOCOLS).index(parser)]
    assert await exchange(STOCK[parser], CASES[case].request) == (stock or CASES[case].answer(parser))


def test_each_listed_difference_is_a_case_with_a_reason() -> None:
    for case, (httptools, h11, reason) in DIFFERENCES.items():
        assert case in CASES and reason and (httptools or h11), case


async def test_malformed_input_never_gets_500_nor_an_exception(parser: str, caplog: pytest.LogCaptureFixture) -> None:
    """Mutations of the corpus: each gets 4xx or 200, or a closed connection, and nothing raises."""
    rng = random.Random(9112)
    corpus = [case.request for case in CASES.values()]
    for _ in range(150):
        request = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 4)):
            at = rng.randrange(len(request))
            edit = rng.choice(["flip", "insert", "delete"])
            if edit == "flip":
                request[at] = rng.choice(b"\r\n\t :;,/?#%@\x00\x7f\xff0aZ-")
            elif edit == "insert":
                request[at:at] = rng.choice([b"\r\n", b" ", b":", b"0\r\n\r\n", b"Host: x\r\n", b"\x00"])
            else:
                del request[at]
        protocol = connect(PROTOCOLS[parser], echo)
        protocol.data_received(bytes(request))
        protocol.transport.close()  # the client leaves: a request still reading its body ends too
        await protocol.loop.run_tasks()
        assert not [task for task in protocol.loop.tasks if task.exception()], bytes(request)
        for code, _ in responses(protocol.transport.buffer):
            assert code == 200 or 400 <= code < 500, bytes(request)
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


async def answer_at_once(scope: Any, receive: Any, send: Any) -> None:
    """An app that answers without reading the body, as a view for another method does."""
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
    await send({"type": "http.response.body", "body": b"ok"})


@pytest.mark.parametrize("answered", [False, True], ids=["before the app answers", "after the app answered"])
async def test_malformed_body_ends_the_connection_without_an_error(
    parser: str, answered: bool, caplog: pytest.LogCaptureFixture
) -> None:
    """Stock uvicorn answers its 400 even to a request whose app runs. With h11 the app's answer then
    raised ('Exception in ASGI application'), or, once the app had answered, uvicorn's 400 raised out of
    data_received; httptools sent its 400 after the app's answer, a second answer to one request."""
    protocol = connect(PROTOCOLS[parser], answer_at_once)
    protocol.data_received(post(CHUNKED, body=b""))
    if answered:
        await protocol.loop.run_tasks()
    protocol.data_received(b"zz\r\nabc\r\n")
    await protocol.loop.run_tasks()
    assert [code for code, _ in responses(protocol.transport.buffer)] == ([200] if answered else [400])
    assert not protocol.transport.open
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.ERROR] == []


# Part B: the limits, the deadline and the probes' exemption


async def test_idle_connection_is_closed_without_answer_at_the_header_deadline(parser: str) -> None:
    protocol = connect(PROTOCOLS[parser], echo)
    protocol.loop.advance(WORKER.header_timeout - 0.1)
    assert protocol.transport.open
    protocol.loop.advance(0.1)
    assert protocol.transport.closed and protocol.transport.buffer == b""


async def test_trickled_head_gets_408_at_the_deadline_from_connecting(parser: str) -> None:
    protocol = connect(PROTOCOLS[parser], echo)
    protocol.data_received(b"GET / HTTP/1.1\r\n")
    for n in range(int(WORKER.header_timeout) - 1):  # a field every second: each byte counts for nothing
        protocol.loop.advance(1)
        protocol.data_received(b"X-Trickle-%d: x\r\n" % n)
    assert protocol.transport.open
    protocol.loop.advance(1)
    assert status(protocol) == 408 and b"connection: close" in protocol.transport.buffer
    assert protocol.transport.eof  # half-closed, reading what the client still sends until the linger ends
    protocol.loop.advance(LINGER_SECONDS)
    assert protocol.transport.closed


async def test_after_a_response_the_deadline_is_at_least_timeout_keep_alive(parser: str) -> None:
    protocol = connect(PROTOCOLS[parser], echo, timeout_keep_alive=30)
    protocol.data_received(get(b"/", b"Host: a.example"))
    await protocol.loop.run_tasks()
    assert status(protocol) == 200
    protocol.data_received(b"GET / HTTP/1.1\r\n")  # uvicorn's keep-alive timer stops here; the deadline does not
    protocol.loop.advance(29.9)
    assert protocol.transport.open
    protocol.loop.advance(0.1)
    assert [code for code, _ in responses(protocol.transport.buffer)] == [200, 408]


@pytest.mark.parametrize(
    ("max_header_bytes", "h11_max_incomplete_event_size"), [(1024, None), (4096, 1024), (1024, 4096)]
)
async def test_head_over_the_smaller_head_limit_gets_431(
    parser: str, max_header_bytes: int, h11_max_incomplete_event_size: int | None
) -> None:
    """``max_header_bytes`` and uvicorn's ``h11_max_incomplete_event_size``: the smaller wins, either parser."""
    worker = WorkerConfig(max_header_bytes=max_header_bytes)
    config = {"h11_max_incomplete_event_size": h11_max_incomplete_event_size}
    head = b"GET / HTTP/1.1\r\nHost: a.example\r\nX-Big: "
    fits = head + b"a" * (1024 - len(head) - 4) + b"\r\n\r\n"
    assert len(fits) == 1024
    protocol = connect(PROTOCOLS[parser], echo, worker, **config)
    protocol.data_received(fits)
    await protocol.loop.run_tasks()
    assert status(protocol) == 200
    protocol = connect(PROTOCOLS[parser], echo, worker, **config)
    for _ in range(64):  # 64 kB in 1 kB reads: the parser never gets more than the limit
        protocol.data_received(head + b"a" * 1024)
    assert status(protocol) == 431


async def test_more_fields_than_max_headers_get_431(parser: str) -> None:
    fields = [b"X-F%d: x" % n for n in range(WORKER.max_headers - 1)]
    assert await exchange(PROTOCOLS[parser], get(b"/", b"Host: a.example", *fields)) == served(
        "/", "host: a.example", *(f"x-f{n}: x" for n in range(WORKER.max_headers - 1))
    )
    too_many = get(b"/", b"Host: a.example", *fields, b"X-Last: x")
    assert await exchange(PROTOCOLS[parser], too_many) == refused(431)


async def test_content_length_over_max_body_bytes_is_refused_before_the_app_runs(parser: str) -> None:
    called = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        called.append(scope["path"])

    protocol = connect(PROTOCOLS[parser], app)
    protocol.data_received(
        get(b"/", b"Host: a.example", b"Content-Length: 1001", b"Expect: 100-continue", method=b"POST")
    )
    await protocol.loop.run_tasks()
    assert status(protocol) == 413 and not protocol.transport.open
    assert called == [] and b"100 Continue" not in protocol.transport.buffer
    assert await exchange(PROTOCOLS[parser], post(b"Content-Length: 1000", body=b"x" * 1000)) == served(
        "/", "host: a.example", "content-length: 1000", body="x" * 1000
    )


async def test_chunked_body_is_cut_off_at_max_body_bytes(parser: str) -> None:
    received = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while (message := await receive())["type"] == "http.request":
            received.append(message["body"])
        received.append(message["type"])

    protocol = connect(PROTOCOLS[parser], app)
    protocol.data_received(post(CHUNKED, body=b""))
    for _ in range(3):  # 1,500 bytes in 500-byte chunks
        protocol.data_received(b"1f4\r\n" + b"x" * 500 + b"\r\n")
    await protocol.loop.run_tasks()
    assert status(protocol) == 413 and not protocol.transport.open
    assert received[-1] == "http.disconnect"  # the app learns the request is gone
    assert len(b"".join(received[:-1])) <= WORKER.max_body_bytes


async def test_trailer_fields_are_bounded_like_a_head(parser: str) -> None:
    """httptools buffers a trailer field whole: an endless one would grow the worker without bound."""
    protocol = connect(PROTOCOLS[parser], echo)
    protocol.data_received(post(CHUNKED, body=b"3\r\nabc\r\n0\r\nX-Endless: "))
    for _ in range(64):
        protocol.data_received(b"a" * 1024)
        if not protocol.transport.open:
            break
    await protocol.loop.run_tasks()
    assert status(protocol) == 431 and not protocol.transport.open


async def test_probes_are_exempt_from_limit_concurrency(parser: str) -> None:
    """Requests in flight count towards the limit; the probes always answer, and idle connections count nothing."""
    entered, release = asyncio.Event(), asyncio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            entered.set()
            await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    idle = [connect(PROTOCOLS[parser], app, limit_concurrency=1) for _ in range(3)]
    slow = connect(PROTOCOLS[parser], app, limit_concurrency=1)
    slow.data_received(get(b"/slow", b"Host: a.example"))
    await entered.wait()
    assert capacity.requests_in_flight() == 1
    try:
        for path, expected in ((b"/-/health", 200), (b"/-/ready", 200), (b"/-/metrics", 200), (b"/fast", 503)):
            protocol = connect(PROTOCOLS[parser], app, limit_concurrency=1)
            protocol.data_received(get(path, b"Host: a.example"))
            await protocol.loop.run_tasks()
            assert status(protocol) == expected, path
    finally:
        release.set()
        await slow.loop.run_tasks()
    assert status(slow) == 200 and capacity.requests_in_flight() == 0
    assert all(protocol.transport.open for protocol in idle)


async def test_an_app_returning_a_value_is_still_reported(parser: str, caplog: pytest.LogCaptureFixture) -> None:
    """The concurrency gate passes the app's return value on, so uvicorn's check still sees it."""

    async def app(scope: Any, receive: Any, send: Any) -> int:
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return 42

    protocol = connect(PROTOCOLS[parser], app)
    protocol.data_received(get(b"/", b"Host: a.example"))
    await protocol.loop.run_tasks()
    assert "ASGI callable should return None, but returned '42'." in caplog.messages
    assert protocol.transport.closed
