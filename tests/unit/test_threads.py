"""Django's sync code runs on `threads` long-lived threads per worker, in ASGI mode too."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from conftest import djserve, get, wait_until

SETTINGS = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}

VIEWS = """
import asyncio, threading, time
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection
from django.db.backends.signals import connection_created
from django.http import HttpResponse

CONNECTIONS = []
connection_created.connect(lambda sender, connection, **kwargs: CONNECTIONS.append(connection))
TASKS = set()
LATE_CALLS = []

def late_calls(request):
    return HttpResponse(str(len(LATE_CALLS)))

def ident(request):
    time.sleep(float(request.GET.get('sleep', 0)))
    return HttpResponse(str(threading.get_ident()))

def hold(request):
    # Holds its thread until the test releases it (at most 30 s), saying when it has started.
    (settings.BASE_DIR / 'held').touch()
    for _ in range(600):
        if (settings.BASE_DIR / 'release').exists():
            break
        time.sleep(0.05)
    return HttpResponse('released')

def query(request):
    with connection.cursor() as cursor:
        cursor.execute('SELECT 1')
    return HttpResponse(str(len(CONNECTIONS)))

async def spawn(request):
    async def after_the_response():
        await asyncio.sleep(0.3)
        LATE_CALLS.append('made')
        await sync_to_async(threading.get_ident)()

    task = asyncio.create_task(after_the_response())
    TASKS.add(task)
    task.add_done_callback(TASKS.discard)
    return HttpResponse('spawned')

urlpatterns += [path('ident', ident), path('query', query), path('spawn', spawn)]
urlpatterns += [path('late', late_calls), path('hold', hold)]
"""


@pytest.fixture
def views(site: Path) -> Path:
    urls = site / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + VIEWS)
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\nDATABASES['default']['CONN_MAX_AGE'] = 60\n")
    return site


def fetch_all(urls: list[str]) -> list[tuple[int, bytes]]:
    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(lambda url: get(url, timeout=30), urls))


def test_concurrent_sync_requests_wait_for_one_of_the_threads(views: Path, serve: Any) -> None:
    server = serve(DJSERVE_THREADS="2")
    started = time.monotonic()
    answers = fetch_all([server.url("/ident?sleep=0.4")] * 6)
    elapsed = time.monotonic() - started
    assert [status for status, _ in answers] == [200] * 6
    assert len({body for _, body in answers}) <= 2
    # Six requests on two threads take three rounds: the extra ones waited rather than failing.
    assert elapsed >= 3 * 0.4


def test_threads_and_their_db_connections_are_reused_across_requests(views: Path, serve: Any) -> None:
    server = serve(DJSERVE_THREADS="2")
    idents = {get(server.url("/ident"))[1] for _ in range(10)}
    idents |= {body for _, body in fetch_all([server.url("/ident")] * 8)}
    assert len(idents) <= 2
    answers = [get(server.url("/query")) for _ in range(10)] + fetch_all([server.url("/query")] * 8)
    assert all(status == 200 for status, _ in answers)
    # CONN_MAX_AGE keeps each thread's connection: two threads never open more than two.
    assert max(int(body) for _, body in answers) <= 2


def test_a_task_that_outlives_its_request_fails_loudly_and_the_worker_keeps_serving(views: Path, serve: Any) -> None:
    server = serve(DJSERVE_THREADS="1")
    assert get(server.url("/spawn")) == (200, b"spawned")
    wait_until(lambda: get(server.url("/late")) == (200, b"1"), 20, "the late task to run")
    assert get(server.url("/ident"))[0] == 200
    code, err = server.stop()
    assert code == 0, err
    assert "RuntimeError: ThreadSensitiveContext has exited" in err
    assert "after_the_response" in err  # the log names the user's coroutine


CHANNELS_ASGI = """
import os
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')
from django.core.asgi import get_asgi_application
django_app = get_asgi_application()

from channels.generic.websocket import WebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path

class Echo(WebsocketConsumer):
    def connect(self):
        self.accept()

    def receive(self, text_data=None, bytes_data=None):
        self.send(text_data=text_data)

application = ProtocolTypeRouter({'http': django_app, 'websocket': URLRouter([path('ws', Echo.as_asgi())])})
"""


def test_websockets_do_not_take_a_thread_from_http_requests(views: Path, serve: Any) -> None:
    (views / "mysite" / "asgi.py").write_text(CHANNELS_ASGI)
    server = serve(DJSERVE_THREADS="1")
    ws_url = f"ws://127.0.0.1:{server.port}/ws"
    with ThreadPoolExecutor(1) as pool:
        held = pool.submit(get, server.url("/hold"), None, 40)
        wait_until((views / "held").exists, 20, "the request to hold the only thread")
        # The only thread is now busy with that request.
        with connect(ws_url, open_timeout=10) as socket:
            socket.send("hello")
            assert socket.recv(timeout=10) == "hello"
        assert not held.done()
        (views / "release").touch()
        assert held.result() == (200, b"released")
    # HTTP through channels' router still runs on the pooled thread, which keeps its one connection.
    assert [get(server.url("/query")) for _ in range(5)][-1] == (200, b"1")


@pytest.mark.parametrize(
    ("env", "args", "line"),
    [
        ({"DJSERVE_THREADS": "0"}, (), "DJSERVE_THREADS (environment): 0 is not in the range x>=1"),
        ({"DJSERVE_THREADS": "eight"}, (), "DJSERVE_THREADS (environment): 'eight' is not a valid integer"),
        ({}, ("--threads", "2.5"), "--threads (command line): '2.5' is not a valid integer"),
        (
            {"DJSERVE_WSGI_THREADS": "8"},
            (),
            "DJSERVE_WSGI_THREADS (environment): unknown setting; did you mean 'DJSERVE_THREADS'?",
        ),
        ({}, ("--wsgi-threads", "8"), "command line: No such option '--wsgi-threads'. Did you mean '--threads'?"),
    ],
)
def test_bad_threads_exit_78_naming_the_source(
    project: Path, env: dict[str, str], args: tuple[str, ...], line: str
) -> None:
    result = djserve("check", *args, cwd=project, env={**SETTINGS, **env})
    assert result.code == 78, result.err
    assert result.lines[0].startswith(line), result.lines
    assert "Traceback" not in result.err


def test_old_wsgi_threads_key_in_the_file_points_to_threads(project: Path, tmp_path: Path) -> None:
    path = tmp_path / "djserve.toml"
    path.write_text("wsgi_threads = 8\n")
    result = djserve("check", cwd=project, env={**SETTINGS, "DJSERVE_CONFIG": str(path)})
    assert result.code == 78
    assert result.lines == [f"wsgi_threads ({path}): unknown setting; did you mean 'threads'?"]
