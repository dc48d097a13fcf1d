"""The images against hostile clients, dead and stuck workers and bad configuration (issue 10's table).

Most rows share one production container, set up the way they need it: one worker (`--cpus 1`), a
2 s header deadline so that the deadlines are quick to watch, 1,024 file descriptors so that 2,000 idle
connections are more than the worker can hold, `limit-concurrency 10`, the README's sized /tmp, and a
module mounted beside the demo with an async view that blocks its event loop. The tests that replace
its worker run last. Every loop is bounded in count and time, and all traffic goes to 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import json
import re
import selectors
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect
from websockets.typing import Origin

from harness import (
    DEMO_ENV,
    HARDENED,
    Container,
    Response,
    StartContainer,
    docker,
    http_get,
    run_container,
    wait_until,
)

# The demo images by variant.
IMAGE = "djserve-demo:{}"
# HARDENED with /tmp sized as the README's `docker run` examples size it.
SIZED_TMP = tuple("/tmp:size=256m" if option == "/tmp" else option for option in HARDENED)
HEADER_TIMEOUT = 2.0
# Slack for a loaded machine on top of every deadline the server keeps.
MARGIN = 5.0
LIMIT_CONCURRENCY = 10
FILE_LIMIT = 1024
MiB = 1 << 20

# Mounted beside the demo (in /app): the demo's settings and URLs, plus an async view that blocks
# the event loop it runs on, as a careless `time.sleep` in a coroutine does.
STUCK_MODULE = """
import time

from demo.settings import *  # noqa: F403
from django.http import HttpResponse
from django.urls import include, path

ROOT_URLCONF = __name__


async def block_the_event_loop(request):
    time.sleep(60)
    return HttpResponse("too late")


urlpatterns = [path("block", block_the_event_loop), path("", include("demo.urls"))]
"""


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Container]:
    module = tmp_path_factory.mktemp("stuck") / "stuck_loop.py"
    module.write_text(STUCK_MODULE)
    module.chmod(0o644)
    env = {
        **DEMO_ENV,
        "DJANGO_SETTINGS_MODULE": "stuck_loop",
        "DJSERVE_HEADER_TIMEOUT": str(HEADER_TIMEOUT),
        "UVICORN_LIMIT_CONCURRENCY": str(LIMIT_CONCURRENCY),
    }
    options = (
        *SIZED_TMP, "--cpus", "1", "--ulimit", f"nofile={FILE_LIMIT}:{FILE_LIMIT}",
        "-v", f"{module}:/app/stuck_loop.py:ro",
    )  # fmt: skip
    container = run_container(IMAGE.format("production"), env=env, options=options)
    try:
        container.wait_healthy(timeout=120)
        yield container
    finally:
        docker("rm", "-f", container.id, check=False, timeout=60)


# Raw connections, for what http.client will not send.


def status_of(answer: bytes) -> int | None:
    line = answer.partition(b"\r\n")[0].split()
    return int(line[1]) if len(line) > 1 and line[0].startswith(b"HTTP/") else None


@dataclass
class Exchange:
    answer: bytes
    answered_after: float | None  # seconds from the start to the first byte of the answer
    sent_when_answered: int  # bytes after the head sent by then


def send_while_reading(port: int, head: bytes, chunks: Iterable[bytes], seconds: float) -> Exchange:
    """Sends a head and then the chunks, reading the answer meanwhile until the server closes.

    Sending stops at the first error (the server closed) and everything ends within ``seconds``.
    """
    sock = socket.create_connection(("127.0.0.1", port), timeout=seconds)
    sent = 0
    stop = threading.Event()

    def send() -> None:
        nonlocal sent
        try:
            sock.sendall(head)
            for chunk in chunks:
                if stop.is_set():
                    return
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            return

    started = time.monotonic()
    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    answer, answered_after, sent_when_answered = b"", None, 0
    try:
        while time.monotonic() - started < seconds and (data := sock.recv(65536)):
            if answered_after is None:
                answered_after, sent_when_answered = time.monotonic() - started, sent
            answer += data
    except OSError:
        pass  # a reset once the server closed, or our timeout
    finally:
        stop.set()
        sock.close()
        sender.join(timeout=10)
    return Exchange(answer, answered_after, sent_when_answered)


def open_connections(port: int, count: int) -> list[socket.socket]:
    return [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(count)]


def close_all(sockets: Iterable[socket.socket]) -> None:
    for sock in sockets:
        sock.close()


def rss_kib(container: Container, pid: int) -> int:
    status = container.exec("cat", f"/proc/{pid}/status").stdout
    rss = re.search(r"^VmRSS:\s+(\d+) kB$", status, re.MULTILINE)
    assert rss, status
    return int(rss[1])


def tmp_kib(container: Container) -> int:
    return int(container.exec("du", "-sk", "/tmp").stdout.split()[0])


def worker_pid(container: Container) -> int | None:
    """The pid of the worker that answers, or None while none does."""
    try:
        response = http_get(container.url("/whoami"), timeout=5)
    except OSError:
        return None
    return int(response.json()["pid"]) if response.status == 200 else None


# The shared production container.


def test_idle_and_trickling_connections_are_closed_within_the_header_timeout(production: Container) -> None:
    port = production.port()
    started = time.monotonic()
    idle = open_connections(port, 100)
    trickling = open_connections(port, 100)
    for sock in trickling:
        sock.sendall(b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n")
    answers = {sock: b"" for sock in (*idle, *trickling)}
    closed_after: dict[socket.socket, float] = {}
    selector = selectors.DefaultSelector()
    for sock in answers:
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
    next_line = time.monotonic() + 0.5
    try:
        while len(closed_after) < len(answers) and time.monotonic() - started < HEADER_TIMEOUT + MARGIN:
            for key, _ in selector.select(timeout=0.1):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                try:
                    data = sock.recv(4096)
                except OSError:
                    data = b""
                if data:
                    answers[sock] += data
                else:
                    closed_after[sock] = time.monotonic() - started
                    selector.unregister(sock)
            if time.monotonic() >= next_line:  # one more header line, every half second
                next_line += 0.5
                for sock in trickling:
                    if sock not in closed_after:
                        with contextlib.suppress(OSError):
                            sock.send(b"X-Trickle: 1\r\n")
    finally:
        selector.close()
        close_all(answers)
    assert len(closed_after) == len(answers), f"{len(answers) - len(closed_after)} of 200 still open"
    # The trickling clients were held to the deadline, not dropped for anything else, and told why.
    assert min(closed_after[sock] for sock in trickling) > HEADER_TIMEOUT - 0.5
    assert {status_of(answers[sock]) for sock in trickling} == {408}
    assert {answers[sock] for sock in idle} == {b""}


def test_many_idle_connections_no_longer_exhaust_the_worker(production: Container) -> None:
    # Twice the worker's file descriptors: without the deadline, it would hold the first thousand forever.
    idle = open_connections(production.port(), 2 * FILE_LIMIT)

    def health() -> bool:
        try:
            return http_get(production.url("/-/health"), timeout=HEADER_TIMEOUT + MARGIN).status == 200
        except OSError:
            return False

    try:
        # Each idle connection holds a descriptor for the header timeout at most.
        wait_until(health, HEADER_TIMEOUT + 2 * MARGIN, "health to answer among 2,048 idle connections")
    finally:
        close_all(idle)
    assert production.health() == "healthy"


def test_unterminated_huge_headers_get_431_and_leave_memory_flat(production: Container) -> None:
    worker = worker_pid(production)  # the only one
    assert worker is not None
    before = rss_kib(production, worker)
    head = b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nX-Huge: "

    def huge_header(_: int) -> Exchange:
        # 64 MB of one header value that never ends, pushed as fast as the server takes it.
        return send_while_reading(production.port(), head, (b"a" * MiB for _ in range(64)), seconds=30)

    with ThreadPoolExecutor(max_workers=4) as pool:
        exchanges = list(pool.map(huge_header, range(4)))
    after = rss_kib(production, worker)
    assert [status_of(exchange.answer) for exchange in exchanges] == [431] * 4
    assert after - before < 32 * 1024, f"RSS {before} -> {after} KiB"
    assert worker_pid(production) == worker


def test_a_1_mb_header_and_1000_headers_get_431(production: Container) -> None:
    port = production.port()
    big = b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nX-Big: " + b"a" * MiB + b"\r\n\r\n"
    many = b"GET /whoami HTTP/1.1\r\nHost: localhost\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(1000))
    assert status_of(send_while_reading(port, big, (), seconds=15).answer) == 431
    assert status_of(send_while_reading(port, many + b"\r\n", (), seconds=15).answer) == 431
    # A head within both limits is still served.
    fine = (
        b"GET /whoami HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Some: "
        + b"a" * 1000
        + b"\r\n\r\n"
    )
    assert status_of(send_while_reading(port, fine, (), seconds=15).answer) == 200


def test_a_500_mb_post_is_refused_413_before_its_body_and_nothing_is_spooled(production: Container) -> None:
    tmp_before = tmp_kib(production)
    head = (
        b"POST /whoami HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Length: %d\r\n\r\n" % (500 * MiB)
    )
    exchange = send_while_reading(production.port(), head, (b"\0" * MiB for _ in range(500)), seconds=30)
    assert status_of(exchange.answer) == 413
    assert exchange.answered_after is not None
    assert exchange.answered_after < MARGIN
    # Answered long before the body could have been sent: nothing waited for it.
    assert exchange.sent_when_answered < 100 * MiB
    assert tmp_kib(production) - tmp_before < 1024
    assert http_get(production.url("/whoami")).status == 200


def test_a_bad_host_header_logs_one_line_without_traceback(production: Container) -> None:
    host = f"evil-{time.monotonic_ns()}.example"
    assert http_get(production.url("/whoami"), headers={"Host": host}).status == 400
    wait_until(lambda: host in production.logs(), 10, "the bad Host to be logged")
    logs = production.logs()
    assert len([line for line in logs.splitlines() if host in line]) == 1
    assert "Traceback" not in logs


# Sent from inside the container: another process on the loopback, as a sidecar in the pod would be.
FORGED = """
import urllib.request
request = urllib.request.Request("http://127.0.0.1:8000/whoami")
request.add_header("X-Forwarded-For", "203.0.113.7")
request.add_header("X-Forwarded-Proto", "https")
print(urllib.request.urlopen(request).read().decode())
"""


def test_production_does_not_believe_forwarded_headers_from_loopback(production: Container) -> None:
    whoami = json.loads(production.exec("python", "-c", FORGED).stdout)
    assert (whoami["client"], whoami["scheme"]) == ("127.0.0.1", "http")


def test_health_answers_200_while_limit_concurrency_is_reached(production: Container) -> None:
    url = production.url("/slow?seconds=6")
    with ThreadPoolExecutor(max_workers=3 * LIMIT_CONCURRENCY) as pool:
        slow = [pool.submit(http_get, url, timeout=30) for _ in range(3 * LIMIT_CONCURRENCY)]
        time.sleep(2)  # all thirty have arrived; ten are sleeping in the view
        health = []
        for _ in range(10):
            health.append(http_get(production.url("/-/health"), timeout=5).status)
            assert production.health() == "healthy"
            time.sleep(0.3)
        statuses = sorted(future.result().status for future in slow)
    assert health == [200] * 10
    assert statuses == [200] * LIMIT_CONCURRENCY + [503] * (2 * LIMIT_CONCURRENCY)
    assert production.health() == "healthy"


def test_a_killed_worker_is_replaced_and_the_container_keeps_running(production: Container) -> None:
    assert json.loads(production.exec("djserve", "config", "--json").stdout)["workers"]["value"] == 1
    init = production.inspect("{{.State.Pid}}")
    old = worker_pid(production)
    assert old is not None
    killed_at = time.monotonic()
    production.exec("sh", "-c", f"kill -9 {old}")
    wait_until(lambda: worker_pid(production) not in {None, old}, 15, "a new worker to answer")
    # The target is a second; the rest is a loaded machine starting Django.
    assert time.monotonic() - killed_at < 10
    assert production.inspect("{{.State.Running}} {{.State.Pid}} {{.RestartCount}}") == f"true {init} 0"


def test_a_stuck_event_loop_is_logged_with_its_stack_and_the_worker_replaced(production: Container) -> None:
    old = worker_pid(production)
    assert old is not None
    blocked = socket.create_connection(("127.0.0.1", production.port()), timeout=10)
    try:
        blocked.sendall(b"GET /block HTTP/1.1\r\nHost: localhost\r\n\r\n")
        # timeout_worker_healthcheck (2 s in the preset), a second to write the stack, then the kill.
        wait_until(lambda: "block_the_event_loop" in production.logs(), 20, "the stuck worker's stack")
        wait_until(lambda: worker_pid(production) not in {None, old}, 20, "a new worker to answer")
    finally:
        blocked.close()
    logs = production.logs()
    assert re.search(rf"worker {old} stuck", logs), logs[-3000:]
    assert re.search(r'File "/app/stuck_loop\.py", line \d+ in block_the_event_loop', logs), logs[-3000:]
    assert production.inspect("{{.State.Running}}") == "true"


# Containers of their own.


def test_probes_answer_on_both_paths_under_a_root_path(start_container: StartContainer) -> None:
    container = start_container(IMAGE.format("production"), env={**DEMO_ENV, "UVICORN_ROOT_PATH": "/api"})
    container.wait_healthy(timeout=120)  # the image's healthcheck asks the bare path
    for path in ("/-/health", "/api/-/health", "/-/ready", "/api/-/ready"):
        assert http_get(container.url(path)).status == 200, path


# The preset's 20 s graceful shutdown plus 5 s to exit, as the staging services' stop_grace_period.
STOP_TIMEOUT = 25


def test_docker_stop_lets_a_request_longer_than_docker_s_default_finish(
    start_container: StartContainer,
) -> None:
    options = (*SIZED_TMP, "--stop-timeout", str(STOP_TIMEOUT))
    container = start_container(IMAGE.format("production"), env=DEMO_ENV, options=options)
    container.wait_healthy(timeout=120)
    responses: list[Response] = []
    url = container.url("/slow?seconds=12")
    request = threading.Thread(target=lambda: responses.append(http_get(url, timeout=40)))
    request.start()
    time.sleep(1)
    started = time.monotonic()
    docker("stop", container.id, timeout=60)  # the container's own stop timeout, as `docker run` set it
    stopped_after = time.monotonic() - started
    request.join(timeout=40)
    assert [response.status for response in responses] == [200]
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    assert 10 < stopped_after < STOP_TIMEOUT


def test_open_websockets_leave_http_served_and_their_own_limit_answers_503(
    start_container: StartContainer,
) -> None:
    env = {
        **DEMO_ENV,
        "UVICORN_WORKERS": "1",
        "UVICORN_LIMIT_CONCURRENCY": "50",
        "DJSERVE_WS_MAX_CONNECTIONS": "50",
    }
    container = start_container(IMAGE.format("websocket"), env=env)
    container.wait_healthy(timeout=120)
    uri = container.url("/ws/echo/").replace("http://", "ws://")
    origin = Origin("http://127.0.0.1")  # the demo checks it against ALLOWED_HOSTS
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(connect(uri, origin=origin, open_timeout=15)) for _ in range(50)]
        sockets[0].send("still there")
        assert sockets[0].recv(timeout=10) == "still there"
        assert http_get(container.url("/whoami")).status == 200
        assert http_get(container.url("/-/health")).status == 200
        with pytest.raises(InvalidStatus) as refused, connect(uri, origin=origin, open_timeout=15):
            pass
        assert refused.value.response.status_code == 503


# The configuration rows: each exits 78 before serving, with one line naming its source.
BAD_VARIABLES = {
    "UVICORN_LOOP": "tokio",
    "UVICORN_HTTP": "h3",
    "UVICORN_WS": "nope",
    "UVICORN_WORKERS": "100000",
    "UVICORN_TIMEOUT_KEEP_ALIVE": "-1",
    "UVICORN_LIMIT_CONCURRENCY": "0",
    "UVICORN_SSL_CERTFILE": "/run/none.pem",
    "UVICORN_SSL_KEYFILE": "/run/none.key",
    "UVICORN_HOST": "0.0.0.0\nevil",
}
SETTINGS_FILE = "/etc/djserve/djserve.toml"
# Settings file contents, and how the line about each begins.
BAD_FILES = {
    "binary": (bytes(range(256)) * 4, f"{SETTINGS_FILE}: "),
    "conflicting-spellings": (
        b"[uvicorn]\naccess-log = true\nno-access-log = true\n",
        f"uvicorn.no-access-log ({SETTINGS_FILE}): conflicts with uvicorn.access-log",
    ),
}


def test_bad_configuration_exits_78_with_one_line_naming_its_source(tmp_path: Path) -> None:
    cases = {
        **{
            name: ([f"--env={name}={value}"], f"{name} (environment): ")
            for name, value in BAD_VARIABLES.items()
        },
        **{
            name: ([f"--volume={tmp_path / name}:{SETTINGS_FILE}:ro"], line)
            for name, (_, line) in BAD_FILES.items()
        },
    }
    for name, (content, _) in BAD_FILES.items():
        (tmp_path / name).write_bytes(content)
        (tmp_path / name).chmod(0o644)

    def check(name: str) -> tuple[int, list[str]]:
        args, _ = cases[name]
        result = docker("run", "--rm", *HARDENED, *args, IMAGE.format("production"), "check", check=False)
        return result.returncode, (result.stdout + result.stderr).splitlines()

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(cases, pool.map(check, cases), strict=True))
    for name, (returncode, lines) in results.items():
        assert (returncode, len(lines)) == (78, 1), (name, lines)
        assert lines[0].startswith(cases[name][1]), (name, lines)
