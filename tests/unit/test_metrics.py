"""Prometheus metrics at /-/metrics: every worker answers with the sum over all of them."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import websockets

from conftest import Logged, djserve, free_port, get, samples, value, wait_until

VIEWS = """
import os, time
from pathlib import Path
from django.http import HttpResponse

def pid(request):
    return HttpResponse(str(os.getpid()))

def slow(request):
    Path(os.environ["SLOW_PIDFILE"]).write_text(str(os.getpid()))
    time.sleep(float(request.GET.get("seconds", "30")))
    return HttpResponse("slow")

urlpatterns += [path("pid", pid), path("slow", slow)]
"""


def with_views(site: Path) -> None:
    urls = site / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + VIEWS)


def lost_request(url: str) -> None:
    with contextlib.suppress(OSError):  # its worker is killed under it
        get(url, timeout=30)


def test_two_workers_add_up_and_keep_a_killed_workers_counts(site: Path, tmp_path: Path, serve: Any) -> None:
    with_views(site)
    pidfile = tmp_path / "slow.pid"
    server = serve("--workers", "2", SLOW_PIDFILE=str(pidfile))
    wait_until(lambda: value(server, "djserve_worker_starts_total") == 2, 30, "both workers to start")

    # Each request on a new connection; go on until both workers have answered some (bounded).
    answered: list[str] = []
    while len(set(answered)) < 2:
        assert len(answered) < 300, f"one worker answered everything: {set(answered)}"
        answered.append(get(server.url("/pid"))[1].decode())
    for _ in range(3):
        get(server.url("/-/health"))  # probes are not counted
    # A worker records a request just after its response is sent, so the last one may take a moment.
    wait_until(
        lambda: value(server, "djserve_requests_total", method="GET", status="200") == len(answered),
        30,
        "every answered request to be counted",
    )
    # Several scrapes, so both workers answer some: each reports the total, which neither served alone.
    for _ in range(6):
        assert value(server, "djserve_requests_total", method="GET", status="200") == len(answered)
    assert value(server, "djserve_request_duration_seconds_count") == len(answered)
    assert value(server, "djserve_worker_starts_total") == 2
    assert value(server, "djserve_requests_in_flight") == 0

    # A request in flight on one worker, then that worker killed.
    slow = threading.Thread(target=lost_request, args=(server.url("/slow?seconds=20"),), daemon=True)
    slow.start()
    wait_until(pidfile.exists, 30, "the slow view to start")
    wait_until(lambda: value(server, "djserve_requests_in_flight") == 1, 30, "one request in flight")
    os.kill(int(pidfile.read_text()), signal.SIGKILL)
    wait_until(lambda: value(server, "djserve_worker_starts_total") == 3, 30, "the replacement worker to start")
    wait_until(lambda: get(server.url("/-/ready"))[0] == 200, 30, "readiness")
    for _ in range(6):
        found = samples(server)
        assert found[("djserve_requests_total", frozenset({("method", "GET"), ("status", "200")}))] == len(answered)
        assert found[("djserve_requests_in_flight", frozenset())] == 0  # the dead worker's request is gone


ECHO = """
async def app(scope, receive, send):
    assert scope["type"] == "websocket"
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.disconnect":
            return
"""


def test_open_websockets_are_counted_while_open(site: Path, serve: Any) -> None:
    (site / "echo.py").write_text(ECHO)
    server = serve("--workers", "2", DJSERVE_APP="echo:app")

    async def hold_two_open() -> None:
        url = f"ws://127.0.0.1:{server.port}/"
        async with websockets.connect(url), websockets.connect(url):
            await asyncio.to_thread(
                wait_until, lambda: value(server, "djserve_websockets_open") == 2, 30, "two open WebSockets"
            )

    asyncio.run(hold_two_open())
    wait_until(lambda: value(server, "djserve_websockets_open") == 0, 30, "no open WebSocket")
    assert not [name for name, _ in samples(server) if name == "djserve_requests_total"]  # not HTTP requests


def test_methods_beyond_the_standard_ones_share_one_label(serve: Any) -> None:
    server = serve()
    for method in ("PURGE", "MKCOL", "GET"):
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request(method, "/missing")
        connection.getresponse().read()
        connection.close()
    wait_until(lambda: value(server, "djserve_request_duration_seconds_count") == 3, 30, "three measured requests")
    found = samples(server)
    methods = {dict(labels)["method"] for name, labels in found if name == "djserve_requests_total"}
    assert methods == {"other", "GET"}
    assert found[("djserve_requests_total", frozenset({("method", "other"), ("status", "404")}))] == 2


def test_the_supervisors_directory_starts_empty(site: Path, tmp_path: Path, serve: Any) -> None:
    directory = tmp_path / "prometheus"
    first = serve("--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(directory))
    for _ in range(3):
        get(first.url("/missing"))
    first.stop()
    assert list(directory.glob("*.db"))  # the first run's values, left behind
    second = serve("--workers", "2", PROMETHEUS_MULTIPROC_DIR=str(directory))
    wait_until(
        lambda: value(second, "djserve_worker_starts_total") == 2, 30, "the second server's two workers"
    )  # not 4
    get(second.url("/missing"))
    # 1, not the first run's 3 plus 1: a count that went past 1 would never come back down.
    wait_until(
        lambda: value(second, "djserve_requests_total", method="GET", status="404") == 1,
        30,
        "the second server's one request",
    )


def test_metrics_off_leaves_the_path_to_django(serve: Any) -> None:
    server = serve("--no-metrics", DJSERVE_METRICS="true")  # the command line wins over the environment
    status, body = get(server.url("/-/metrics"))
    assert status == 404 and b"Page not found" in body


def test_an_unwritable_metrics_directory_is_a_configuration_error(site: Path, tmp_path: Path) -> None:
    blocked = tmp_path / "file"
    blocked.write_text("")
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "PROMETHEUS_MULTIPROC_DIR": str(blocked / "metrics")}
    result = djserve("serve", "--port", str(free_port()), cwd=site, env=env, timeout=30)
    assert result.code == 78
    assert "metrics (default): cannot prepare the metrics directory" in result.err
    assert "Traceback" not in result.err


def test_metrics_answer_on_the_bare_path_and_under_root_path(serve: Any) -> None:
    server = serve("--root-path", "/api")
    for path in ("/-/metrics", "/api/-/metrics"):
        status, body = get(server.url(path))
        assert status == 200, path
        assert b"djserve_worker_starts_total" in body


def labelled(server: Logged, name: str, label: str) -> set[str]:
    """The values of ``label`` over the series of metric ``name``."""
    return {dict(labels)[label] for found, labels in samples(server) if found == name}


def test_the_sizing_metrics_add_up_over_two_workers(site: Path, tmp_path: Path, logged: Callable[..., Logged]) -> None:
    with_views(site)
    pidfile = tmp_path / "slow.pid"
    server = logged(workers=2, DJSERVE_PRESET="production", SLOW_PIDFILE=str(pidfile))
    workers = sorted(server.workers())
    # Each worker's own memory, one series per live worker and kind.
    found = samples(server)
    memory = {key: number for key, number in found.items() if key[0] == "djserve_worker_memory_bytes"}
    assert {(dict(labels)["pid"], dict(labels)["kind"]) for _, labels in memory} == {
        (str(pid), kind) for pid in workers for kind in ("uss", "pss")
    }
    assert all(number > 0 for number in memory.values())
    # Pool threads: four slow requests hold four threads, whichever workers they reach; each waited once.
    holders = [threading.Thread(target=lost_request, args=(server.url("/slow?seconds=3"),)) for _ in range(4)]
    for holder in holders:
        holder.start()
    wait_until(lambda: value(server, "djserve_threads_busy") == 4, 10, "four busy threads")
    for holder in holders:
        holder.join()
    wait_until(lambda: value(server, "djserve_threads_busy") == 0, 10, "no busy thread")
    answered = value(server, "djserve_requests_total", method="GET", status="200")
    assert value(server, "djserve_thread_wait_seconds_count") == answered == 4
    # Why workers were replaced: every reason is there from the start, at 0, and a killed worker counts.
    reasons = {"exited", "killed", "stuck", "max_requests", "max_memory", "max_lifetime"}
    assert labelled(server, "djserve_worker_restarts_total", "reason") == reasons
    os.kill(workers[0], signal.SIGKILL)
    wait_until(
        lambda: value(server, "djserve_worker_restarts_total", reason="killed") == 1,
        10,
        "the killed worker's restart to be counted",
    )
    wait_until(
        lambda: str(workers[0]) not in labelled(server, "djserve_worker_memory_bytes", "pid"),
        10,
        "the dead worker's memory series to go",
    )


UPLOAD = """
from django.http import HttpResponse
from django.views.decorators.csrf import csrf_exempt

@csrf_exempt
def upload(request):
    return HttpResponse(str(sum(f.size for f in request.FILES.values())))

urlpatterns.append(path("upload", upload))
"""


@pytest.fixture
def small_tmp(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs, the temporary directory of the server under test (root only)."""
    mount = tmp_path / "tmpfs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def upload(server: Logged, size: int) -> int:
    boundary = "djserve"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="f"; filename="f.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + os.urandom(size)
        + f"\r\n--{boundary}--\r\n".encode()
    )
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    connection.request("POST", "/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"})
    status = connection.getresponse().status
    connection.close()
    return status


def test_a_full_tmp_fails_the_upload_and_kills_no_worker(
    site: Path, small_tmp: Path, logged: Callable[..., Logged]
) -> None:
    """prometheus_client's files are mapped into memory: on a full filesystem a new series or a new worker's
    file is a SIGBUS. They live apart from the temporary directory that uploads fill (/dev/shm)."""
    urls = site / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + UPLOAD)
    server = logged(workers=1, DJSERVE_PRESET="production", TMPDIR=str(small_tmp))
    assert upload(server, 1 << 20) == 200
    assert upload(server, 6 << 20) == 507  # it cannot be spooled: an answer, not a dead connection
    assert server.text().count("request body not spooled: [Errno 28] No space left on device") == 1
    assert "Traceback" not in server.text()
    fill = os.open(small_tmp / "fill", os.O_WRONLY | os.O_CREAT)
    with contextlib.suppress(OSError):
        while True:
            os.write(fill, bytes(1 << 16))
    os.close(fill)
    assert upload(server, 1 << 20) == 507
    for method in ("PUT", "DELETE", "PATCH", "OPTIONS"):  # new series
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        connection.request(method, "/missing")
        assert connection.getresponse().status == 404
        connection.close()
    # The scrape writes the worker's tallies, the new series among them, before it answers.
    assert value(server, "djserve_requests_total", method="PATCH", status="404") == 1
    (worker,) = server.workers()
    os.kill(worker, signal.SIGKILL)  # its replacement creates its files
    wait_until(lambda: server.answers() and worker not in server.workers(), 10, "a replacement worker that answers")
    assert value(server, "djserve_requests_total", method="PATCH", status="404") == 1  # the dead worker's count
    assert "SIGBUS" not in server.text()
    assert value(server, "djserve_worker_restarts_total", reason="killed") == 1


def test_tallied_observations_land_in_the_buckets_prometheus_client_would_put_them_in() -> None:
    """The tallies count into a Histogram's buckets themselves: the same values observed by prometheus_client
    and tallied then written give the same samples, bounds and the values on them included."""
    from prometheus_client import CollectorRegistry, Histogram

    from djserve.app.observe import WAIT_BUCKETS, Buckets

    values = [0.0, 0.0004, 0.0005, 0.0006, 0.001, 0.003, 0.25, 0.2500001, 9.99, 10.0, 11.0, 1e9]
    observed, tallied = CollectorRegistry(), CollectorRegistry()
    direct = Histogram("wait", "", buckets=WAIT_BUCKETS, registry=observed)
    written = Histogram("wait", "", buckets=WAIT_BUCKETS, registry=tallied)
    buckets = Buckets(WAIT_BUCKETS)
    for number, seconds in enumerate(values):
        direct.observe(seconds)
        buckets.observe(seconds)
        if number % 5 == 0:  # written in several goes, as once a second: each adds only what is new
            buckets.write(written)
    buckets.write(written)
    buckets.write(written)

    def found(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
        return {
            (s.name, s.labels.get("le", "")): s.value
            for metric in registry.collect()
            for s in metric.samples
            if not s.name.endswith("_created")
        }

    assert found(tallied) == found(observed)
    assert found(tallied)[("wait_bucket", "0.0005")] == 3  # a value on a bound counts in that bound's bucket
