"""djserve's WSGI bridge under real uvicorn and Django servers, against what gunicorn users expect."""

from __future__ import annotations

import concurrent.futures
import hashlib
import http.client
import json
import os
import select
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Server, get, start

MAX_BODY = 4 * 1024 * 1024  # above the bridge's 1 MiB spool threshold

# The test project's views: Django's own responses, plus raw WSGI apps for what Django never does.
VIEWS = '''
import asyncio, hashlib, json, os, sys, threading, time, warnings
from pathlib import Path
from wsgiref.validate import WSGIWarning, validator

from asgiref.sync import async_to_sync
from django.core.signals import request_finished
from django.core.wsgi import get_wsgi_application
from django.http import FileResponse, HttpResponse, JsonResponse, StreamingHttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt

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
]

django = get_wsgi_application()
validated = validator(django)


def application(environ, start_response):
    """Django, behind raw WSGI apps for what Django never does, and validator-wrapped Django."""
    route = environ["PATH_INFO"]
    if route == "/raw/write":
        write = start_response("200 OK", [("Content-Type", "text/plain")])
        write(b"written, ")
        return [b"then returned"]
    if route == "/raw/exc_info":
        start_response("200 OK", [("Content-Type", "text/plain")])
        try:
            raise ValueError("changed its mind")
        except ValueError:
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")], sys.exc_info())
        return [b"replaced"]
    if route == "/raw/exc_info_late":
        def late():
            yield b"sent\\n"
            try:
                raise ValueError("too late")
            except ValueError:
                start_response("500 Internal Server Error", [("Content-Type", "text/plain")], sys.exc_info())
            yield b"never\\n"
        start_response("200 OK", [("Content-Type", "text/plain")])
        return late()
    if route == "/raw/errors":
        environ["wsgi.errors"].write("the app complains\\n")
        start_response("204 No Content", [])
        return []
    if route == "/raw/error":
        raise RuntimeError("the app failed")
    if route.startswith("/raw/environ/"):
        start_response("200 OK", [("Content-Type", "application/json")])
        keys = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "SERVER_NAME", "SERVER_PORT", "REMOTE_ADDR",
                "REMOTE_PORT", "SERVER_PROTOCOL", "HTTP_X_TWICE", "HTTP_COOKIE", "CONTENT_TYPE", "CONTENT_LENGTH")
        found = {k: environ[k] for k in keys if k in environ}
        found["url_scheme"] = environ["wsgi.url_scheme"]
        found["underscored"] = [k for k in environ if "SPOOF" in k]
        return [json.dumps(found).encode()]
    if route.startswith("/validated/"):
        environ["SCRIPT_NAME"], environ["PATH_INFO"] = "/validated", route[len("/validated"):]
        return validated(environ, start_response)
    return django(environ, start_response)
'''


@pytest.fixture(scope="module")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


def add_views(site: Path) -> None:
    (site / "mysite" / "bridged.py").write_text(VIEWS)
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text().replace("ROOT_URLCONF = 'mysite.urls'", "ROOT_URLCONF = 'mysite.bridged'"))


@pytest.fixture(scope="module")
def bridged(project: Path, tmp_path_factory: pytest.TempPathFactory, markers: Path) -> Iterator[Server]:
    """One WSGI-mode server with 2 threads, shared by the tests of this module."""
    site = tmp_path_factory.mktemp("bridged") / "site"
    shutil.copytree(project, site)
    add_views(site)
    server = start(
        site,
        DJANGO_SETTINGS_MODULE="mysite.settings",
        DJSERVE_INTERFACE="wsgi",
        DJSERVE_THREADS="2",
        DJSERVE_MAX_BODY_BYTES=str(MAX_BODY),
        DJSERVE_APP="mysite.bridged:application",
        BRIDGE_MARKERS=str(markers),
    )
    yield server
    server.kill()
    server.process.communicate()


def connection(server: Server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)


def request(server: Server, method: str, path: str, body: bytes | None = None) -> http.client.HTTPResponse:
    conn = connection(server)
    conn.request(method, path, body=body)
    return conn.getresponse()


def wait_until(condition: Any, timeout: float = 15) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


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


def test_every_set_cookie_header_arrives(bridged: Server) -> None:
    response = request(bridged, "GET", "/cookies")
    assert sorted(c.split(";")[0] for c in response.headers.get_all("Set-Cookie")) == ["a=1", "b=2"]


def test_a_client_leaving_mid_stream_stops_it_and_closes_the_response(bridged: Server, markers: Path) -> None:
    (markers / "finished").unlink(missing_ok=True)
    with socket.create_connection(("127.0.0.1", bridged.port)) as client:
        client.sendall(b"GET /endless HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert client.recv(1024)
    # Django's request_finished fired (the bridge called close()), and the generator stopped early.
    assert wait_until((markers / "finished").exists)
    stopped_at = int((markers / "sent").read_text())
    time.sleep(0.5)
    assert int((markers / "sent").read_text()) == stopped_at < 100


def test_a_client_that_does_not_read_holds_the_stream_back(bridged: Server, markers: Path) -> None:
    (markers / "finished").unlink(missing_ok=True)
    with socket.create_connection(("127.0.0.1", bridged.port)) as client:
        client.sendall(b"GET /flood HTTP/1.1\r\nHost: localhost\r\n\r\n")
        assert wait_until((markers / "flooded").exists)
        time.sleep(2)
        # Socket buffers hold a few MB: the generator waits instead of filling memory with 125 MB.
        held_at = int((markers / "flooded").read_text())
        assert held_at < 400
    # Once the client leaves, the stream ends within a chunk and the response is closed.
    assert wait_until((markers / "finished").exists)
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
    assert (response.status, response.read()) == (413, b"Request body too large\n")
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
        environ = json.loads(response.read())
        port = client.getsockname()[1]
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


def test_root_path_becomes_script_name(serve: Any, site: Path) -> None:
    # uvicorn's root_path is the prefix a proxy stripped: the request path comes without it.
    server = serve("--root-path", "/prefix", DJSERVE_INTERFACE="wsgi", ready="/admin/login/")
    status, body = get(server.url("/admin/login/"))
    assert status == 200
    assert b'action="/prefix/admin/login/"' in body  # Django built its URL from SCRIPT_NAME


def test_wsgi_errors_reach_the_log(serve: Any, site: Path, tmp_path: Path) -> None:
    add_views(site)
    server = serve(
        DJSERVE_INTERFACE="wsgi",
        DJSERVE_APP="mysite.bridged:application",
        DJSERVE_LOG_FORMAT="json",
        BRIDGE_MARKERS=str(tmp_path),
    )
    assert get(server.url("/raw/errors"))[0] == 204
    _, err = server.stop()
    entries = [json.loads(line) for line in err.splitlines()]
    assert any(e["logger"] == "djserve.wsgi" and e["message"] == "the app complains" for e in entries), err


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
