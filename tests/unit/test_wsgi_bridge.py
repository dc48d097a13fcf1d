"""djserve's WSGI bridge under real uvicorn and Django servers, against what gunicorn users expect."""

from __future__ import annotations

import concurrent.futures
import contextlib
import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from test_hostile import PARSERS

from conftest import DJSERVE, Server, environment, free_port, get, start, wait_until

MAX_BODY = 4 * 1024 * 1024  # above the bridge's 1 MiB spool threshold

# Plain WSGI apps for what Django never does (mysite/rawapps.py): served through the bridge, and by the
# reference servers, which import them without Django. Each marker file of a Stream records its reads
# ("r") and its close() ("c").
RAW_APPS = '''
import json, os, sys
from pathlib import Path

MARKERS = Path(os.environ["BRIDGE_MARKERS"])
TEXT = [("Content-Type", "text/plain")]


class Stream:
    def __init__(self, name, chunks):
        self.marker, self.chunks = MARKERS / name, iter(chunks)
        self.marker.write_text("")

    def __iter__(self):
        return self

    def __next__(self):
        chunk = next(self.chunks)
        with self.marker.open("a") as f:
            f.write("r")
        return chunk

    def close(self):
        with self.marker.open("a") as f:
            f.write("c")


def write(environ, start_response):
    write = start_response("200 OK", TEXT)
    write(b"written, ")
    return [b"then returned"]


def exc_info(environ, start_response):
    start_response("200 OK", TEXT)
    try:
        raise ValueError("changed its mind")
    except ValueError:
        start_response("503 Service Unavailable", TEXT, sys.exc_info())
    return [b"replaced"]


def exc_info_late(environ, start_response):
    def late():
        yield b"sent\\n"
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Internal Server Error", TEXT, sys.exc_info())
        yield b"never\\n"
    start_response("200 OK", TEXT)
    return late()


def errors(environ, start_response):
    environ["wsgi.errors"].write("the app complains\\n")
    start_response("204 No Content", [])
    return []


def error(environ, start_response):
    raise RuntimeError("the app failed")


def fails_first(environ, start_response):
    def failing():
        raise RuntimeError("failed before its first chunk")
        yield b""
    start_response("200 OK", TEXT)
    return Stream("fails_first", failing())


# Bodies longer than their Content-Length, as after a middleware rewrote a body and not its length.
def long(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "5")])
    return [b"hello world"]


def long_stream(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "25")])
    return Stream("long_stream", [b"0123456789"] * 200)


def long_write(environ, start_response):
    write = start_response("200 OK", [*TEXT, ("Content-Length", "8")])
    write(b"written, ")
    return [b"then returned"]


# Bodies shorter than their Content-Length.
def short(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "20")])
    return [b"only ten b"]


def short_stream(environ, start_response):
    start_response("200 OK", [*TEXT, ("Content-Length", "20")])
    return Stream("short_stream", [b"only ", b"ten b"])


def no_content(environ, start_response):
    start_response("204 No Content", [])
    return [b"not sent"]


def environ_app(environ, start_response):
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps({k: v for k, v in environ.items() if isinstance(v, (str, int))}).encode()]


ROUTES = {f"/raw/{app.__name__}": app for app in (
    write, exc_info, exc_info_late, errors, error, fails_first, long, long_stream, long_write, short,
    short_stream, no_content,
)}


def find(path):
    """The raw app for ``path`` (any path below /raw/environ/ shows the environ), or None."""
    return environ_app if path.startswith("/raw/environ/") else ROUTES.get(path)


def application(environ, start_response):
    app = find(environ["PATH_INFO"])
    if app is None:
        start_response("404 Not Found", TEXT)
        return [b"not found"]
    return app(environ, start_response)
'''

# The test project's views: Django's own responses, the raw apps, and both behind wsgiref's validator.
VIEWS = '''
import asyncio, hashlib, json, os, sys, threading, time, warnings
from pathlib import Path
from wsgiref.validate import WSGIWarning, validator

from asgiref.sync import async_to_sync
from django.core.wsgi import get_wsgi_application

django = get_wsgi_application()  # first: it loads the apps the admin's URLs need

from django.contrib import admin
from django.core.signals import request_finished
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from mysite import rawapps

MARKERS = Path(os.environ["BRIDGE_MARKERS"])
warnings.simplefilter("error", WSGIWarning)  # a validator warning fails the request


def unraisable(hook_args):
    (MARKERS / "unraisable").write_text(repr(hook_args.exc_value))


sys.unraisablehook = unraisable


def finished(sender, **kwargs):
    with open(MARKERS / "finished", "a") as f:
        f.write("x")


request_finished.connect(finished)


def wait_for(name):
    deadline = time.monotonic() + 15
    while not (MARKERS / name).exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return (MARKERS / name).exists()


@csrf_exempt
def echo(request):
    body = request.body
    return JsonResponse({"length": len(body), "sha256": hashlib.sha256(body).hexdigest()})


def gated(request):
    def chunks():
        yield b"first\\n"
        yield b"released\\n" if wait_for("release") else b"timed out\\n"
    return StreamingHttpResponse(chunks())


def endless(request):
    def chunks():
        for n in range(600):
            (MARKERS / "sent").write_text(str(n))
            yield b"x" * 1024
            time.sleep(0.05)
    return StreamingHttpResponse(chunks())


def flood(request):
    def chunks():
        for n in range(2000):
            (MARKERS / "flooded").write_text(str(n))
            yield b"x" * 65536
    return StreamingHttpResponse(chunks())


def broken(request):
    def chunks():
        yield b"partial\\n"
        raise RuntimeError("broken stream")
    return StreamingHttpResponse(chunks())


def cookies(request):
    response = HttpResponse("two cookies")
    response.set_cookie("a", "1")
    response.set_cookie("b", "2")
    return response


def download(request):
    return FileResponse(open(MARKERS / "download.bin", "rb"))


def thread(request):
    return HttpResponse(str(threading.get_ident()))


async def where():
    return {"thread": threading.get_ident(), "loop": id(asyncio.get_running_loop())}


def loop(request):
    inner = async_to_sync(where)()
    return JsonResponse({"view": threading.get_ident(), "main": threading.main_thread().ident, **inner})


urlpatterns = [
    path("echo", echo), path("gated", gated), path("endless", endless), path("flood", flood), path("broken", broken),
    path("cookies", cookies), path("download", download), path("thread", thread), path("loop", loop),
    path("admin/", admin.site.urls),
]


def routed(environ, start_response):
    return (rawapps.find(environ["PATH_INFO"]) or django)(environ, start_response)


validated = validator(routed)


def application(environ, start_response):
    """The raw apps, else Django; below /validated/ the same, behind wsgiref's PEP 3333 validator."""
    route = environ["PATH_INFO"]
    if route.startswith("/validated/"):
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/validated", route[len("/validated"):]
        return validated(environ, start_response)
    return routed(environ, start_response)
'''


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


def add_views(site: Path) -> None:
    (site / "mysite" / "rawapps.py").write_text(RAW_APPS)
    (site / "mysite" / "bridged.py").write_text(VIEWS)
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text().replace("ROOT_URLCONF = 'mysite.urls'", "ROOT_URLCONF = 'mysite.bridged'"))


def views_site(project: Path, tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    site = tmp_path_factory.mktemp(name) / "site"
    shutil.copytree(project, site)
    add_views(site)
    return site


def bridged_server(
    project: Path, tmp_path_factory: pytest.TempPathFactory, markers: Path, http: str
) -> Iterator[Server]:
    server = start(
        views_site(project, tmp_path_factory, "bridged"),
        "--http",
        http,
        DJANGO_SETTINGS_MODULE="mysite.settings",
        DJSERVE_INTERFACE="wsgi",
        DJSERVE_THREADS="2",
        DJSERVE_MAX_BODY_BYTES=str(MAX_BODY),
        DJSERVE_APP="mysite.bridged:application",
        BRIDGE_MARKERS=str(markers),
    )
    yield server
    server.kill()
    server.process.wait()


@pytest.fixture(scope="module")
def bridged(project: Path, tmp_path_factory: pytest.TempPathFactory, markers: Path) -> Iterator[Server]:
    """One WSGI-mode server with 2 threads, shared by the tests of this module."""
    yield from bridged_server(project, tmp_path_factory, markers, "httptools")


@pytest.fixture(scope="module")
def bridged_h11(project: Path, tmp_path_factory: pytest.TempPathFactory, markers: Path) -> Iterator[Server]:
    """The same behind uvicorn's other HTTP parser, for the tests of what each parser checks differently."""
    yield from bridged_server(project, tmp_path_factory, markers, "h11")


@pytest.fixture(params=PARSERS)
def parsed(request: pytest.FixtureRequest) -> Server:
    server: Server = request.getfixturevalue("bridged" if request.param == "httptools" else "bridged_h11")
    return server


@pytest.fixture(scope="module")
def references(project: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, int]]:
    """The raw apps under the reference servers, by name: wsgiref's simple_server and uvicorn's own WSGI
    interface. gunicorn is not installed here: where it matters, tests cite its source (gunicorn/http/wsgi.py)."""
    site = views_site(project, tmp_path_factory, "references")
    ports = {"wsgiref": free_port(), "uvicorn": free_port()}
    commands = {
        "wsgiref": [sys.executable, "-c", WSGIREF, str(ports["wsgiref"])],
        "uvicorn": [
            sys.executable,
            "-m",
            "uvicorn",
            "--interface=wsgi",
            f"--port={ports['uvicorn']}",
            "mysite.rawapps:application",
        ],
    }
    markers = str(tmp_path_factory.mktemp("reference_markers"))
    with contextlib.ExitStack() as stack:
        for name, command in commands.items():
            stack.enter_context(running(command, site, ports[name], BRIDGE_MARKERS=markers))
        yield ports


@contextlib.contextmanager
def running(
    command: list[str], cwd: Path, port: int, ready: Callable[[], bool] | None = None, **env: str
) -> Iterator[Server]:
    """A server the test starts itself, from once it answers (``ready()``, else the raw apps on ``port``)
    until the end of the block."""
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=environment(**env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    server = Server(process, port)
    try:
        wait_until(ready or partial(answers, port), 15, f"{command} to answer")
        yield server
    finally:
        server.kill()
        process.communicate()


WSGIREF = """
import sys
from wsgiref.simple_server import make_server
from mysite.rawapps import application

make_server("127.0.0.1", int(sys.argv[1]), application).serve_forever()
"""


def answers(port: int) -> bool:
    try:
        return fetch(port, "GET", "/raw/environ/")[0] == 200
    except OSError:
        return False


def fetch(port: int, method: str, path: str) -> tuple[int, bytes, bool]:
    """A request on a new connection: the status, the body the client reads, and whether it arrived whole."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path)
        response = conn.getresponse()
        try:
            return response.status, response.read(), True
        except http.client.IncompleteRead as cut:
            return response.status, cut.partial, False
    finally:
        conn.close()


def connection(server: Server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)


def request(server: Server, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    conn = connection(server)
    conn.request(method, path, body=body)
    return conn.getresponse()


def test_django_under_the_wsgi_validator_sees_no_violation(bridged: Server, markers: Path) -> None:
    assert get(bridged.url("/validated/echo"))[0] == 200
    response = request(bridged, "POST", "/validated/echo", b"payload")
    assert json.loads(response.read()) == {"length": 7, "sha256": hashlib.sha256(b"payload").hexdigest()}
    head = request(bridged, "HEAD", "/validated/cookies")
    assert (head.status, head.read()) == (200, b"")
    assert get(bridged.url("/validated/missing"))[0] == 404
    streamed = request(bridged, "GET", "/validated/broken")
    with pytest.raises(http.client.IncompleteRead):
        streamed.read()
    # A violation raises in the worker: a 500, or for an iterator never closed, an unraisable error.
    assert not (markers / "unraisable").exists()


def test_a_streamed_response_arrives_chunk_by_chunk(bridged: Server, markers: Path) -> None:
    (markers / "release").unlink(missing_ok=True)
    response = request(bridged, "GET", "/gated")
    assert response.status == 200
    # The generator is still blocked when its first chunk arrives: nothing buffers the stream.
    assert response.readline() == b"first\n"
    (markers / "release").touch()
    assert response.read() == b"released\n"


def test_file_response_arrives_whole(bridged: Server, markers: Path) -> None:
    content = os.urandom(3 * 256 * 1024 + 17)  # several of the bridge's file blocks, and a short one
    (markers / "download.bin").write_bytes(content)
    response = request(bridged, "GET", "/download")
    assert response.status == 200
    assert response.getheader("Content-Length") == str(len(content))
    assert response.read() == content


def test_write_callable_output_precedes_the_returned_body(bridged: Server) -> None:
    assert get(bridged.url("/raw/write")) == (200, b"written, then returned")


def test_exc_info_replaces_the_status_before_anything_is_sent(bridged: Server) -> None:
    assert get(bridged.url("/raw/exc_info")) == (503, b"replaced")


def test_exc_info_after_the_headers_were_sent_aborts_the_response(bridged: Server) -> None:
    response = request(bridged, "GET", "/raw/exc_info_late")
    assert response.status == 200
    with pytest.raises(http.client.IncompleteRead) as aborted:
        response.read()
    assert aborted.value.partial == b"sent\n"


def test_an_app_error_is_a_500_and_the_worker_keeps_serving(bridged: Server) -> None:
    assert get(bridged.url("/raw/error")) == (500, b"Internal Server Error")
    assert get(bridged.url("/cookies")) == (200, b"two cookies")


def test_head_keeps_the_headers_and_sends_no_body(bridged: Server) -> None:
    full = request(bridged, "GET", "/cookies")
    head = request(bridged, "HEAD", "/cookies")
    assert head.status == 200 and head.read() == b""
    assert head.getheader("Content-Length") == full.getheader("Content-Length") == str(len(full.read()))
    streamed = request(bridged, "HEAD", "/gated")
    assert (streamed.status, streamed.read()) == (200, b"")


def test_every_set_cookie_header_arrives(parsed: Server) -> None:
    # Django writes each Set-Cookie value after a space, which h11 refused: the bridge strips it, as gunicorn does.
    response = request(parsed, "GET", "/cookies")
    assert sorted(c.split(";")[0] for c in response.headers.get_all("Set-Cookie")) == ["a=1", "b=2"]


# What the client gets from a body and its Content-Length: (method, path, (status, body, whether it is whole)).
# The same under gunicorn (gunicorn/http/wsgi.py: Response.write sends at most Content-Length bytes, and a
# short body leaves the client short) and under wsgiref, the reference run here. A whole body leaves the
# connection ready for the next request; after a short one the connection is closed at once.
FRAMING = [
    ("GET", "/raw/long", (200, b"hello", True)),
    ("GET", "/raw/long_stream", (200, b"0123456789" * 2 + b"01234", True)),
    ("GET", "/raw/long_write", (200, b"written,", True)),
    ("GET", "/raw/short", (200, b"only ten b", False)),
    ("GET", "/raw/short_stream", (200, b"only ten b", False)),
    ("GET", "/raw/no_content", (204, b"", True)),
    ("HEAD", "/raw/long", (200, b"", True)),
    ("HEAD", "/raw/long_stream", (200, b"", True)),
    ("HEAD", "/raw/short", (200, b"", True)),
]


def exchange(client: socket.socket, method: str, path: str) -> tuple[int, bytes, bool]:
    """One request on an open connection: the status, the body, and whether it is whole.

    Nothing is read past the announced body, so bytes sent beyond it would begin the next answer.
    """
    client.sendall(f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = client.recv(1)
        assert byte, f"closed after {head!r}"
        head += byte
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ")[1])
    fields = dict(line.split(b": ", 1) for line in lines[1:-2])
    length = 0 if method == "HEAD" or status == 204 else int(fields[b"content-length"])
    body = b""
    while len(body) < length and (chunk := client.recv(length - len(body))):
        body += chunk
    return status, body, len(body) == length


@pytest.mark.parametrize(("method", "path", "expected"), FRAMING)
def test_content_length_frames_the_body_as_the_reference_servers_do(
    parsed: Server, references: dict[str, int], method: str, path: str, expected: tuple[int, bytes, bool]
) -> None:
    assert fetch(references["wsgiref"], method, path) == expected
    with socket.create_connection(("127.0.0.1", parsed.port), timeout=10) as client:
        assert exchange(client, method, path) == expected
        whole = expected[2]
        if whole:  # nothing came past the body: the connection serves the next request
            assert exchange(client, "GET", "/raw/long") == (200, b"hello", True)
        else:  # the client is not left waiting for the rest (the socket's timeout would fail the test)
            assert client.recv(1) == b""


def test_a_stream_is_closed_unread_once_its_content_length_is_sent(parsed: Server, markers: Path) -> None:
    # Deliberate: gunicorn and wsgiref read the other 197 chunks and drop them. No client sees the
    # difference, and PEP 3333 asks only that close() is called.
    assert fetch(parsed.port, "GET", "/raw/long_stream")[1] == b"0123456789" * 2 + b"01234"
    assert (markers / "long_stream").read_text() == "rrrc"
    assert fetch(parsed.port, "HEAD", "/raw/long_stream") == (200, b"", True)
    wait_until(lambda: (markers / "long_stream").read_text() == "rc", 15, "the long stream's close()")
    # A stream that fails before its first chunk is a 500, and closed too.
    assert fetch(parsed.port, "GET", "/raw/fails_first") == (500, b"Internal Server Error", True)
    assert (markers / "fails_first").read_text() == "c"


# Raw apps that stream, cut, fall short, raise, write() and use exc_info.
VALIDATED = [
    "/raw/write",
    "/raw/exc_info",
    "/raw/exc_info_late",
    "/raw/error",
    "/raw/fails_first",
    "/raw/long",
    "/raw/long_stream",
    "/raw/long_write",
    "/raw/short",
    "/raw/short_stream",
    "/raw/no_content",
]


def test_raw_apps_under_the_wsgi_validator_answer_as_without_it(bridged: Server, markers: Path) -> None:
    # wsgiref's validator checks the environ, start_response, write(), each chunk and that the iterable is
    # closed; a violation raises (a 500, or a cut response) or, for an iterable never closed, is unraisable.
    for path in VALIDATED:
        for method in ("GET", "HEAD"):
            assert fetch(bridged.port, method, "/validated" + path) == fetch(bridged.port, method, path), (method, path)
    assert not (markers / "unraisable").exists()


LAYERED = """
import sys

import uvicorn

from djserve.app.threads import ThreadPool
from djserve.app.wsgi import WSGIBridge
from mysite.rawapps import application


def content_type_seen(app):
    # An ASGI layer that, like a compressing middleware, looks up the response's content-type.
    async def layer(scope, receive, send):
        async def send_seen(message):
            if message["type"] == "http.response.start":
                seen = dict(message["headers"]).get(b"content-type", b"nothing")
                message["headers"] = [*message["headers"], (b"x-layer-saw", seen)]
            await send(message)

        await app(scope, receive, send_seen)

    return layer


bridge = WSGIBridge(application, ThreadPool(1), max_body_bytes=1024)
uvicorn.run(content_type_seen(bridge), port=int(sys.argv[1]), log_level="warning")
"""


def test_asgi_layers_find_the_response_headers_by_lowercase_name(
    project: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The ASGI spec: header names must be lowercased. The wire never showed it: uvicorn lowercases them.
    site = views_site(project, tmp_path_factory, "layered")
    port = free_port()
    with running([sys.executable, "-c", LAYERED, str(port)], site, port, BRIDGE_MARKERS=str(site)) as layered:
        assert request(layered, "GET", "/raw/long").getheader("X-Layer-Saw") == "text/plain"


def test_a_client_leaving_mid_stream_stops_it_and_closes_the_response(bridged: Server, markers: Path) -> None:
    (markers / "finished").unlink(missing_ok=True)
    with socket.create_connection(("127.0.0.1", bridged.port)) as client:
        client.sendall(b"GET /endless HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert client.recv(1024)
    # Django's request_finished fired (the bridge called close()), and the generator stopped early.
    wait_until((markers / "finished").exists, 15, "the app to finish")
    stopped_at = int((markers / "sent").read_text())
    time.sleep(0.5)
    assert int((markers / "sent").read_text()) == stopped_at < 100


def test_a_client_that_does_not_read_holds_the_stream_back(bridged: Server, markers: Path) -> None:
    (markers / "finished").unlink(missing_ok=True)
    with socket.create_connection(("127.0.0.1", bridged.port)) as client:
        client.sendall(b"GET /flood HTTP/1.1\r\nHost: localhost\r\n\r\n")
        wait_until((markers / "flooded").exists, 15, "the flood to be sent")
        time.sleep(2)
        # Socket buffers hold a few MB: the generator waits instead of filling memory with 125 MB.
        held_at = int((markers / "flooded").read_text())
        assert held_at < 400
    # Once the client leaves, the stream ends within a chunk and the response is closed.
    wait_until((markers / "finished").exists, 15, "the app to finish")
    assert int((markers / "flooded").read_text()) <= held_at + 1


def test_body_above_the_spool_threshold_reaches_django_intact(bridged: Server) -> None:
    body = os.urandom(2 * 1024 * 1024)  # above the spool threshold, below Django's DATA_UPLOAD_MAX_MEMORY_SIZE
    response = request(bridged, "POST", "/echo", body)
    assert json.loads(response.read()) == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}


def test_a_chunked_body_reaches_django_intact(bridged: Server) -> None:
    parts = [os.urandom(50_000) for _ in range(3)]
    conn = connection(bridged)
    conn.request("POST", "/echo", body=iter(parts), encode_chunked=True)
    whole = b"".join(parts)
    assert json.loads(conn.getresponse().read()) == {"length": len(whole), "sha256": hashlib.sha256(whole).hexdigest()}


def test_an_announced_body_over_the_limit_is_refused_unread(bridged: Server, markers: Path) -> None:
    (markers / "finished").unlink(missing_ok=True)
    conn = connection(bridged)
    conn.putrequest("POST", "/echo")
    conn.putheader("Content-Length", str(MAX_BODY + 1))
    conn.endheaders()  # and no body at all: the answer must not wait for it
    response = conn.getresponse()
    # Answered by djserve's HTTP protocol, before the bridge (see djserve.protocols).
    assert response.status == 413
    assert not (markers / "finished").exists()  # Django never ran


def test_a_chunked_body_crossing_the_limit_is_refused(bridged: Server, markers: Path) -> None:
    (markers / "finished").unlink(missing_ok=True)
    with socket.create_connection(("127.0.0.1", bridged.port)) as client:
        client.sendall(b"POST /echo HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (64 * 1024, b"x" * 64 * 1024)
        for _ in range(2 * MAX_BODY // (64 * 1024)):
            if select.select([client], [], [], 0)[0]:
                break  # the answer came before the body ended
            try:
                client.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError):
                break
        answer = client.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert not (markers / "finished").exists()


def test_environ_is_pep_3333_for_the_request(bridged: Server) -> None:
    with socket.create_connection(("127.0.0.1", bridged.port)) as client:
        client.sendall(
            b"POST /raw/environ/%C3%A9t%C3%A9%2Fx?q=1&r=%20 HTTP/1.1\r\nHost: localhost\r\nX-Twice: a\r\nX-Twice: b\r\n"
            b"Cookie: a=1\r\nCookie: b=2\r\nX_Spoof: 1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nhi"
        )
        response = http.client.HTTPResponse(client)
        response.begin()
        full = json.loads(response.read())
        port = client.getsockname()[1]
    keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR", "REMOTE_PORT")
    keys += ("SERVER_PROTOCOL", "HTTP_X_TWICE", "HTTP_COOKIE", "CONTENT_TYPE", "CONTENT_LENGTH")
    environ = {k: full[k] for k in keys if k in full}
    environ["url_scheme"] = full["wsgi.url_scheme"]
    environ["underscored"] = [k for k in full if "SPOOF" in k]
    assert environ == {
        "SCRIPT_NAME": "",
        "PATH_INFO": "/raw/environ/été/x".encode().decode("latin-1"),
        "QUERY_STRING": "q=1&r=%20",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": str(bridged.port),
        "REMOTE_ADDR": "127.0.0.1",
        "REMOTE_PORT": str(port),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_X_TWICE": "a, b",
        "HTTP_COOKIE": "a=1; b=2",
        "CONTENT_TYPE": "text/plain",
        "CONTENT_LENGTH": "2",
        "url_scheme": "http",
        "underscored": [],
    }


# The environ the bridge and the reference servers build for these requests, compared key by key.
ENVIRON_REQUESTS = [
    b"POST /raw/environ/%C3%A9t%C3%A9%2Fx/%FF?q=1&r=%20 HTTP/1.1\r\nHost: example.com:8080\r\nX-Twice: a\r\n"
    b"X-Twice: b\r\nCookie: a=1\r\nCookie: b=2\r\nX_Spoof: 1\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
    b"Connection: close\r\n\r\nhi",
    b"POST /raw/environ/ HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    b"2\r\nhi\r\n0\r\n\r\n",
]
COMPARED = (
    "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
    "REMOTE_ADDR", "CONTENT_TYPE", "CONTENT_LENGTH", "HTTP_HOST", "HTTP_X_TWICE", "HTTP_COOKIE", "HTTP_X_SPOOF",
    "HTTP_TRANSFER_ENCODING", "wsgi.url_scheme",
)  # fmt: skip
# Every key where the bridge's environ differs from a reference server's, the servers, and why ours stands.
DELIBERATE = {
    "HTTP_X_TWICE": (
        {"wsgiref", "uvicorn"},
        "repeated fields joined with ', ', which RFC 9110 5.3 recommends; gunicorn, wsgiref and uvicorn write ','",
    ),
    "HTTP_COOKIE": (
        {"wsgiref", "uvicorn"},
        "cookies joined with '; ', the one Cookie field RFC 6265 5.4 allows: Django splits cookies at ';' only, "
        "so under gunicorn, wsgiref and uvicorn ('a=1,b=2') cookie b is lost",
    ),
    "HTTP_X_SPOOF": (
        {"wsgiref", "uvicorn"},
        "a name with '_' would pass for one with '-' (X_Forwarded_For): dropped, as gunicorn (22 and later) "
        "and Django's runserver drop it",
    ),
    "PATH_INFO": (
        {"uvicorn"},
        "PEP 3333: the path's bytes decoded as latin-1, as gunicorn and wsgiref do; uvicorn turns %FF into U+FFFD",
    ),
    "SERVER_PORT": ({"uvicorn"}, "PEP 3333: a string; uvicorn gives an int"),
    "SERVER_NAME": (
        {"wsgiref"},
        "the address the client reached, as under uvicorn (and gunicorn, which names its listening address); "
        "wsgiref names its host. CGI, which PEP 3333 follows, allows either (RFC 3875 4.1.14)",
    ),
    "CONTENT_LENGTH": (
        {"wsgiref", "uvicorn"},
        "a chunked body's length: Django reads CONTENT_LENGTH bytes of wsgi.input and nothing without it, so "
        "under gunicorn, wsgiref and uvicorn it sees the body empty",
    ),
    "CONTENT_TYPE": ({"wsgiref"}, "absent without a Content-Type, as under gunicorn; wsgiref makes up text/plain"),
}


def environ_of(port: int, raw: bytes) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as client:
        client.sendall(raw)
        response = http.client.HTTPResponse(client)
        response.begin()
        environ = json.loads(response.read())
    if environ["SERVER_PORT"] in (port, str(port)):  # its own port, as a string or not
        environ["SERVER_PORT"] = type(environ["SERVER_PORT"]).__name__
    return {key: environ.get(key, "(absent)") for key in COMPARED}


def test_environ_differs_from_the_reference_servers_only_where_listed(
    bridged: Server, references: dict[str, int]
) -> None:
    differences: dict[str, dict[str, tuple[Any, Any]]] = {}
    for raw in ENVIRON_REQUESTS:
        ours = environ_of(bridged.port, raw)
        for name, port in references.items():
            theirs = environ_of(port, raw)
            for key in COMPARED:
                if ours[key] != theirs[key]:
                    differences.setdefault(key, {})[name] = (ours[key], theirs[key])
    found = {key: set(servers) for key, servers in differences.items()}
    assert found == {key: servers for key, (servers, _) in DELIBERATE.items()}, differences


def over_unix(path: Path, target: str, host: str = "localhost") -> tuple[int, bytes]:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(str(path))
        client.sendall(f"GET {target} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(client)
        response.begin()
        return response.status, response.read()


def serves_unix(path: Path) -> bool:
    try:
        return over_unix(path, "/-/health")[0] == 200
    except OSError:
        return False


def test_behind_a_unix_socket_the_host_header_names_the_server(site: Path, tmp_path: Path) -> None:
    # A Unix socket has no host or port, nor a client address: as under gunicorn, SERVER_NAME and SERVER_PORT
    # come from the Host header (PEP 3333 requires them, never empty), and REMOTE_ADDR is set but empty.
    add_views(site)
    path = tmp_path / "djserve.sock"
    env = {"DJSERVE_INTERFACE": "wsgi", "DJSERVE_APP": "mysite.bridged:application", "BRIDGE_MARKERS": str(tmp_path)}
    command = [DJSERVE, "serve", "--uds", str(path)]
    with running(command, site, 0, partial(serves_unix, path), DJANGO_SETTINGS_MODULE="mysite.settings", **env):
        environ = json.loads(over_unix(path, "/raw/environ/", "example.com:8080")[1])
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"], environ["REMOTE_ADDR"]) == ("example.com", "8080", "")
        environ = json.loads(over_unix(path, "/raw/environ/", "[::1]")[1])
        assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("[::1]", "80")


def test_root_path_becomes_script_name(serve: Any, site: Path, tmp_path: Path) -> None:
    # uvicorn's root_path is the prefix a proxy stripped: the request path comes without it.
    add_views(site)
    server = serve(
        "--root-path",
        "/prefix",
        DJSERVE_INTERFACE="wsgi",
        DJSERVE_APP="mysite.bridged:application",
        BRIDGE_MARKERS=str(tmp_path),
        ready="/admin/login/",
    )
    status, body = get(server.url("/admin/login/"))
    assert status == 200
    assert b'action="/prefix/admin/login/"' in body  # Django built its URL from SCRIPT_NAME
    # As under uvicorn's own WSGI interface: the rest of the path, percent-decoded, is PATH_INFO.
    environ = json.loads(get(server.url("/raw/environ/a%2Fb%20c/%C3%A9?x=%2F"))[1])
    path = "/raw/environ/a/b c/é".encode().decode("latin-1")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"], environ["QUERY_STRING"]) == ("/prefix", path, "x=%2F")


def test_wsgi_errors_and_content_length_faults_reach_the_log(serve: Any, site: Path, tmp_path: Path) -> None:
    add_views(site)
    server = serve(
        DJSERVE_INTERFACE="wsgi",
        DJSERVE_APP="mysite.bridged:application",
        DJSERVE_LOG_FORMAT="json",
        BRIDGE_MARKERS=str(tmp_path),
    )
    assert get(server.url("/raw/errors"))[0] == 204
    assert fetch(server.port, "GET", "/raw/long") == (200, b"hello", True)
    assert fetch(server.port, "GET", "/raw/short") == (200, b"only ten b", False)
    _, err = server.stop()
    entries = [json.loads(line) for line in err.splitlines()]
    assert any(e["logger"] == "djserve.wsgi" and e["message"] == "the app complains" for e in entries), err
    # The app's faults a stale Content-Length hides from the client, named with the request they cut.
    assert [e["message"] for e in entries if e["logger"] == "djserve.wsgi"][1:] == [
        "GET /raw/long: the body is longer than its Content-Length; the rest is not sent",
        "GET /raw/short: the body ended 10 bytes short of its Content-Length",
    ]


def test_threads_bound_the_threads_that_run_django(bridged: Server) -> None:
    with concurrent.futures.ThreadPoolExecutor(max_workers=10) as clients:
        answers = list(clients.map(lambda _: get(bridged.url("/thread")), range(50)))
    assert {status for status, _ in answers} == {200}
    assert len({ident for _, ident in answers}) <= 2


def test_async_to_sync_in_a_sync_view_runs_on_the_workers_loop(bridged: Server) -> None:
    first = json.loads(get(bridged.url("/loop"))[1])
    second = json.loads(get(bridged.url("/loop"))[1])
    # The coroutine ran on the worker's main thread, in its one event loop, not in a loop of its own.
    assert first["thread"] == first["main"] != first["view"]
    assert first["loop"] == second["loop"]


# What clients can send that reaches the bridge and Django, beyond what the parsers refuse themselves.
HOSTILE = [
    b"GET /%ff%fe HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /a%00b HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /admin/login/?%ff=%fe&a&=&%zz HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET http://localhost/admin/login/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET //admin/login/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"GET /admin/login/ HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    b"GET /admin/login/ HTTP/1.1\r\nHost: [::1\r\n\r\n",
    b"GET /admin/login/ HTTP/1.1\r\nHost: localhost\r\nHost: other\r\n\r\n",
    b"GET /admin/login/ HTTP/1.0\r\n\r\n",
    b"GET /admin/login/ HTTP/1.1\r\nHost: localhost\r\nCookie: \xff\xfe=\x01; ;;=; a\r\n\r\n",
    b"GET /admin/login/ HTTP/1.1\r\nHost: localhost\r\nX-A: \xe9\xff\r\nAccept-Language: \xff,,;q=x\r\n\r\n",
    b'GET /admin/login/ HTTP/1.1\r\nHost: localhost\r\nIf-None-Match: "\xff\r\nRange: bytes=9-1\r\n\r\n',
    b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: multipart/form-data; boundary=\r\n"
    b"Content-Length: 5\r\n\r\nhello",
    b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/x-www-form-urlencoded; "
    b"charset=bogus\r\nContent-Length: 7\r\n\r\na=%ff&b",
    b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"0\r\n\r\n",
    b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
    b"POST /admin/login/ HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
    b"FOO /admin/login/ HTTP/1.1\r\nHost: localhost\r\n\r\n",
    b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n",
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
    b"GET /admin/login/ HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    b"GET /admin/login/ HTTP/1.1\r\nHost: localhost\r\n Folded: x\r\n\r\n",
]


def final_status(client: socket.socket) -> bytes:
    """The status line of the answer after any 1xx, or b"" if the connection closed without one."""
    data = b""
    while True:
        head, end, rest = data.partition(b"\r\n\r\n")
        if end and not head.startswith(b"HTTP/1.1 1"):
            return head.split(b"\r\n")[0]
        if end:
            data = rest
        elif chunk := client.recv(65536):
            data += chunk
        else:
            return b""


@pytest.mark.parametrize("http", PARSERS)
def test_no_request_a_client_can_send_gets_a_500(serve: Any, http: str) -> None:
    server = serve("--http", http, DJSERVE_INTERFACE="wsgi", ready="/admin/login/")
    for raw in HOSTILE:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as client:
            client.sendall(raw)
            answer = final_status(client)
        assert not answer.startswith(b"HTTP/1.1 5"), (raw, answer)
    assert get(server.url("/admin/login/"))[0] == 200
    _, err = server.stop()
    # Nothing reached uvicorn as an exception or an unfinished response, and the worker never restarted.
    assert "Exception in ASGI application" not in err and "ASGI callable" not in err, err
    assert err.count("Started server process") == 1, err
