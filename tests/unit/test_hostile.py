"""Hostile clients against real servers: slow and oversized heads, oversized bodies, saturation, bad hosts.

Each server runs with a short header deadline so that the deadlines can be observed; timings leave
wide margins because the machine running the tests is shared.
"""

from __future__ import annotations

import json
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

from djserve import defaults

from conftest import djserve, environment, free_port, get, printed_command, wait_until

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 1.5  # --header-timeout in these tests
MARGIN = 3.0  # how late a close may be observed on a loaded machine
PARSERS = ["httptools", "h11"]
HEAD = b"GET /-/health HTTP/1.1\r\nHost: 127.0.0.1\r\n"


def limited(serve: Any, http: str, *args: str, **env: str) -> Any:
    return serve("--http", http, "--header-timeout", str(DEADLINE), *args, **env)


def dial(server: Any) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE + MARGIN)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (or the socket times out)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def read_response(sock: socket.socket) -> bytes:
    """One response, leaving the connection open: a Content-Length body, or a chunked one."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    lengths = [int(line.split(b":")[1]) for line in head.lower().split(b"\r\n") if line.startswith(b"content-length")]
    while not (len(body) >= lengths[0] if lengths else body.endswith(b"0\r\n\r\n")):
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def worker_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


@pytest.mark.parametrize("http", PARSERS)
def test_idle_connection_is_closed_without_answer_at_the_deadline(serve: Any, http: str) -> None:
    server = limited(serve, http)
    with dial(server) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
        elapsed = time.monotonic() - started
    assert DEADLINE * 0.8 <= elapsed <= DEADLINE + MARGIN


@pytest.mark.parametrize("http", PARSERS)
def test_partial_head_is_answered_408_at_the_deadline(serve: Any, http: str) -> None:
    server = limited(serve, http)
    with dial(server) as sock:
        sock.sendall(HEAD)
        started = time.monotonic()
        response = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert status(response) == 408 and b"connection: close" in response
    assert DEADLINE * 0.8 <= elapsed <= DEADLINE + MARGIN


def trickle(sock: socket.socket) -> tuple[bytes, float]:
    """Send a head one header line every quarter second until the server answers or closes."""
    sock.sendall(HEAD)
    started = time.monotonic()
    sock.settimeout(0.25)
    response = b""
    for n in range(int((DEADLINE + MARGIN + 2) / 0.25)):
        try:
            sock.sendall(b"X-Trickle-%d: x\r\n" % n)
            response += sock.recv(65536)
            break
        except TimeoutError:
            continue
        except OSError:
            break
    return response, time.monotonic() - started


@pytest.mark.parametrize("http", PARSERS)
def test_trickling_headers_are_cut_off_at_the_deadline(serve: Any, http: str) -> None:
    server = limited(serve, http)
    with dial(server) as sock:
        response, elapsed = trickle(sock)
    assert status(response) == 408
    assert DEADLINE * 0.8 <= elapsed <= DEADLINE + MARGIN


@pytest.mark.parametrize("http", PARSERS)
def test_keep_alive_connection_gets_the_deadline_after_each_response(serve: Any, http: str) -> None:
    # After a response the deadline is the longer of header_timeout and uvicorn's keep-alive timeout.
    keep_alive = 3
    server = limited(serve, http, "--timeout-keep-alive", str(keep_alive))
    with dial(server) as idle, dial(server) as trickling:
        for sock in (idle, trickling):
            sock.sendall(HEAD + b"\r\n")
            assert status(read_response(sock)) == 200
        started = time.monotonic()
        # uvicorn's keep-alive timer stops at the first byte; the head deadline still ends a trickle.
        response, elapsed = trickle(trickling)
        assert status(response) == 408
        assert keep_alive * 0.8 <= elapsed <= keep_alive + MARGIN
        assert read_until_closed(idle) == b""
        assert time.monotonic() - started <= keep_alive + MARGIN


@pytest.mark.parametrize("http", PARSERS)
def test_oversized_head_and_too_many_fields_get_431(serve: Any, http: str) -> None:
    server = limited(serve, http, "--max-header-bytes", "16384", "--max-headers", "20")
    just_fits = HEAD + b"X-Big: " + b"a" * 15000 + b"\r\n\r\n"
    too_big = HEAD + b"X-Big: " + b"a" * 17000 + b"\r\n\r\n"
    twenty = HEAD + b"".join(b"X-F%d: x\r\n" % n for n in range(19)) + b"\r\n"  # Host and 19 more
    too_many = HEAD + b"".join(b"X-F%d: x\r\n" % n for n in range(20)) + b"\r\n"
    for request, expected in ((just_fits, 200), (too_big, 431), (twenty, 200), (too_many, 431)):
        with dial(server) as sock:
            sock.sendall(request)
            response = read_until_closed(sock) if expected == 431 else read_response(sock)
        assert status(response) == expected, request[:60]


@pytest.mark.parametrize("http", PARSERS)
def test_unterminated_64_mb_headers_leave_the_worker_rss_flat(serve: Any, http: str) -> None:
    server = limited(serve, http)
    pid = server.process.pid  # one worker: uvicorn serves in djserve's own process
    assert get(server.url("/-/health"))[0] == 200
    before = worker_rss_kb(pid)
    peak = before
    chunk = b"a" * 65536
    for _ in range(4):  # four clients in turn, 64 MB each
        with dial(server) as sock:
            sock.settimeout(10)
            sent = 0
            try:
                sock.sendall(HEAD + b"X-Big: ")
                while sent < 64 * 1024 * 1024:
                    sock.sendall(chunk)
                    sent += len(chunk)
                    if sent % (1024 * 1024) == 0:
                        peak = max(peak, worker_rss_kb(pid))
            except OSError:
                pass  # refused and closed: the rest was never read
            peak = max(peak, worker_rss_kb(pid))
    assert get(server.url("/-/health"))[0] == 200
    assert peak - before < 4096, f"RSS {before} kB -> peak {peak} kB"


@pytest.mark.parametrize("http", PARSERS)
def test_content_length_over_the_limit_is_refused_before_the_body(serve: Any, http: str) -> None:
    server = limited(serve, http, "--max-body-bytes", "1000")
    with dial(server) as sock:
        # Only the head is sent: the answer comes without waiting for the body.
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n")
        response = read_until_closed(sock)
    assert status(response) == 413 and response.endswith(b"Request Entity Too Large\n")
    with dial(server) as sock:
        # curl asks before sending a large body: the answer is 413, never "100 Continue".
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\nExpect: 100-continue\r\n\r\n")
        assert status(read_until_closed(sock)) == 413
    with dial(server) as sock:
        sock.sendall(b"POST /-/health HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n" + b"x" * 1000)
        assert status(read_response(sock)) == 200


@pytest.mark.parametrize("http", PARSERS)
def test_chunked_body_is_cut_off_at_the_limit(serve: Any, http: str) -> None:
    server = limited(serve, http, "--max-body-bytes", "1000")
    with dial(server) as sock:
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n")
        response = b""
        try:
            for _ in range(10):  # 5,000 bytes in 500-byte chunks, unless the server stops us first
                sock.sendall(b"1f4\r\n" + b"x" * 500 + b"\r\n")
                time.sleep(0.05)
        except OSError:
            pass
        response = read_until_closed(sock)
    assert status(response) == 413


def _slow_site(site: Path) -> None:
    urls = site / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text()
        + "\nimport asyncio, itertools\nfrom django.conf import settings\nfrom django.http import HttpResponse\n"
        "arrivals = itertools.count()\n"
        "async def slow(request):\n"
        "    (settings.BASE_DIR / f'arrived-{next(arrivals)}').touch()\n"
        "    await asyncio.sleep(4)\n    return HttpResponse('done')\n"
        "async def fast(request):\n    return HttpResponse('fast')\n"
        "urlpatterns += [path('slow', slow), path('fast', fast)]\n"
    )


@pytest.mark.parametrize("http", PARSERS)
def test_probes_answer_while_limit_concurrency_is_saturated(site: Path, serve: Any, http: str) -> None:
    _slow_site(site)
    server = limited(serve, http, "--limit-concurrency", "2", "--timeout-keep-alive", "30")
    # Idle keep-alive connections do not count towards the limit (uvicorn counted them).
    idle = [dial(server) for _ in range(3)]
    for sock in idle:
        sock.sendall(HEAD + b"\r\n")
        assert status(read_response(sock)) == 200
    slow = [threading.Thread(target=get, args=(server.url("/slow"),), kwargs={"timeout": 20}) for _ in range(2)]
    for thread in slow:
        thread.start()
    wait_until(lambda: len(list(site.glob("arrived-*"))) == 2, 15, "both slow requests to be in flight")
    try:
        assert get(server.url("/-/health")) == (200, b"ok\n")
        assert get(server.url("/-/ready")) == (200, b"ready\n")
        assert get(server.url("/fast"))[0] == 503
    finally:
        for thread in slow:
            thread.join(timeout=20)
        for sock in idle:
            sock.close()
    # Django finishes a request (signals, closing) just after the client has its response.
    wait_until(lambda: get(server.url("/fast"))[0] == 200, 5, "the concurrency gate to let a request through")


def test_probes_answer_on_the_bare_path_and_under_root_path(serve: Any) -> None:
    server = serve("--root-path", "/api")
    for path in ("/-/health", "/api/-/health"):
        assert get(server.url(path)) == (200, b"ok\n"), path
    for path in ("/-/ready", "/api/-/ready"):
        assert get(server.url(path)) == (200, b"ready\n"), path
    # The image's healthcheck asks for the bare path and passes.
    check = subprocess.run(
        [sys.executable, str(ROOT / "docker" / "healthcheck.py")],
        env=environment(UVICORN_PORT=str(server.port), UVICORN_ROOT_PATH="/api"),
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert check.returncode == 0, check.stderr


ECHO_APP = """
async def app(scope, receive, send):
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})
        return
    await receive()
    await send({"type": "websocket.accept"})
    while (message := await receive())["type"] != "websocket.disconnect":
        await send({"type": "websocket.send", "text": message.get("text")})
"""


@pytest.mark.parametrize(("http", "ws"), [("httptools", "websockets-sansio"), ("h11", "wsproto")])
def test_websockets_beyond_ws_max_connections_are_refused_with_503(site: Path, serve: Any, http: str, ws: str) -> None:
    (site / "echo.py").write_text(ECHO_APP)
    server = limited(
        serve, http, "--ws", ws, "--ws-max-connections", "2", "--limit-concurrency", "2", DJSERVE_APP="echo:app"
    )
    url = f"ws://127.0.0.1:{server.port}/socket"
    with connect(url, open_timeout=5) as first, connect(url, open_timeout=5) as second:
        with pytest.raises(InvalidStatus) as refused:
            connect(url, open_timeout=5)
        assert refused.value.response.status_code == 503
        # Open WebSockets count neither towards limit-concurrency nor against the probes.
        assert get(server.url("/-/health"))[0] == 200
        assert get(server.url("/plain")) == (200, b"plain")
        # The head deadline ended with the handshake: a WebSocket outlives it.
        time.sleep(DEADLINE + 1)
        first.send("still here")
        assert first.recv(timeout=5) == "still here"
        second.close()
        time.sleep(0.5)
        with connect(url, open_timeout=5):
            pass


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_bad_host_and_malformed_requests_log_one_line_each(site: Path, serve: Any, log_format: str) -> None:
    # As in production: with DEBUG = True, Django's own console handler also prints the traceback.
    settings = site / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text().replace("DEBUG = True", "DEBUG = False") + "\nALLOWED_HOSTS = ['127.0.0.1']\n"
    )
    server = serve(DJSERVE_LOG_FORMAT=log_format)
    assert get(server.url("/"), {"Host": "attacker.example"})[0] == 400
    with dial(server) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        assert status(read_until_closed(sock)) == 400
    code, err = server.stop()
    assert code == 0, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len([line for line in lines if "Invalid HTTP_HOST header" in line]) == 1, err
    assert len([line for line in lines if "Invalid HTTP request received." in line]) == 1, err
    if log_format == "json":
        entries = [json.loads(line) for line in lines]
        host = next(e for e in entries if "Invalid HTTP_HOST" in e["message"])
        assert host["logger"] == "django.security.DisallowedHost" and "exception" not in host


def test_printed_command_serves_with_djserves_protocols_and_limits(site: Path) -> None:
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}

    def http_of(*args: str) -> str:
        argv = shlex.split(djserve("command", *args, cwd=site, env=env).out)
        return argv[argv.index("--http") + 1]

    assert http_of() == "djserve.protocols:HttpToolsProtocol"  # auto: httptools is installed
    assert http_of("--http", "h11") == "djserve.protocols:H11Protocol"
    # A protocol class the user names is theirs, used as is.
    assert (
        http_of("--http", "uvicorn.protocols.http.h11_impl:H11Protocol")
        == "uvicorn.protocols.http.h11_impl:H11Protocol"
    )

    port = free_port()
    line = djserve("command", "--host", "127.0.0.1", "--port", str(port), "--max-body-bytes", "1000", cwd=site, env=env)
    assert "DJSERVE_MAX_BODY_BYTES=1000" in line.out
    with (
        printed_command(line.out.strip(), site, port, **env),
        socket.create_connection(("127.0.0.1", port), timeout=5) as sock,
    ):
        sock.sendall(b"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5000\r\n\r\n")
        assert status(read_until_closed(sock)) == 413


HEADERS_APP = """
async def app(scope, receive, send):
    while (await receive()).get("more_body"):
        pass
    body = b"".join(b"%s: %s\\n" % field for field in scope["headers"])
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.mark.parametrize("protocol", ["HttpToolsProtocol", "H11Protocol"])
def test_plain_uvicorn_with_djserves_protocol_serves_and_limits_without_djserves_environment(
    tmp_path: Path, protocol: str
) -> None:
    """``uvicorn --http djserve.protocols:...`` run by hand: the declared defaults apply (every request got 500)."""
    (tmp_path / "app.py").write_text(HEADERS_APP)
    port = free_port()
    line = f"uvicorn --http djserve.protocols:{protocol} --host 127.0.0.1 --port {port} app:app"

    def exchange(request: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(request)
            return read_until_closed(sock)

    with printed_command(line, tmp_path, port):
        code, body = get(f"http://127.0.0.1:{port}/")
        assert code == 200 and b"host: 127.0.0.1:%d\n" % port in body
        too_long = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (defaults.MAX_BODY_BYTES + 1)
        assert status(exchange(too_long)) == 413
        assert status(exchange(HEAD + b"X-Big: " + b"a" * defaults.MAX_HEADER_BYTES + b"\r\n\r\n")) == 431
        assert status(exchange(HEAD + b"Host: b\r\n\r\n")) == 400
        trailers = b"0\r\nHost: evil.example\r\nX-Remote-User: admin\r\n\r\n"
        response = exchange(
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + trailers
        )
        assert status(response) == 200
        assert response.endswith(b"\r\n\r\nhost: a\ntransfer-encoding: chunked\nconnection: close\n")
