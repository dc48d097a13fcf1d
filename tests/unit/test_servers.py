"""Real servers: djserve serving a fresh startproject on free ports, in both interfaces."""

from __future__ import annotations

import http.client
import json
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import DJSERVE, djserve, environment, free_port, get, printed_command

EVIL = {"Host": "attacker.example"}


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_both_interfaces_serve_django_and_probes(serve: Any, interface: str) -> None:
    server = serve(DJSERVE_INTERFACE=interface, DJSERVE_THREADS="4")
    status, body = get(server.url("/"))
    assert status == 200 and b"Django" in body
    # Django refuses a host it does not know; the probes never reach Django.
    assert get(server.url("/"), EVIL)[0] == 400
    assert get(server.url("/-/health"), EVIL) == (200, b"ok\n")
    assert get(server.url("/-/ready"), EVIL) == (200, b"ready\n")
    code, err = server.stop()
    assert code == 0, err
    assert "DeprecationWarning" not in err


def test_probes_hold_with_several_workers(serve: Any) -> None:
    server = serve("--workers", "2", ready="/healthz", DJSERVE_HEALTH_PATH="/healthz")
    for _ in range(20):
        assert get(server.url("/healthz"), EVIL)[0] == 200
        assert get(server.url("/-/ready"), EVIL)[0] == 200
    assert get(server.url("/-/health"))[0] == 404  # the path moved
    code, err = server.stop()
    assert code == 0, err
    assert err.count("Started server process") == 2


def test_sigterm_waits_for_a_request_in_flight(site: Path, serve: Any) -> None:
    views = site / "mysite" / "urls.py"
    views.write_text(
        views.read_text() + "\nimport asyncio\nfrom django.http import HttpResponse\n"
        "async def slow(request):\n    await asyncio.sleep(2)\n    return HttpResponse('done')\n"
        "urlpatterns.append(path('slow', slow))\n"
    )
    server = serve("--timeout-graceful-shutdown", "10")
    request = subprocess.Popen(
        [sys.executable, "-c", f"import urllib.request; print(urllib.request.urlopen('{server.url('/slow')}').read())"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.5)
    code, err = server.stop()
    assert code == 0, err
    assert request.communicate(timeout=10)[0].strip() == "b'done'"


def test_json_logs_for_uvicorn_and_django(site: Path, serve: Any) -> None:
    settings = site / "mysite" / "settings.py"
    # With DEBUG on, Django's own console handler adds its plain-text copy of django.* records.
    settings.write_text(settings.read_text() + "\nDEBUG = False\nALLOWED_HOSTS = ['127.0.0.1']\n")
    server = serve("--access-log", DJSERVE_LOG_FORMAT="json")
    get(server.url("/-/health"))  # probes are answered before the access log
    get(server.url("/missing"))  # Django logs "Not Found" through django.request
    _, err = server.stop()
    entries = [json.loads(line) for line in err.splitlines()]
    loggers = {entry["logger"] for entry in entries}
    assert {"uvicorn.error", "djserve.access", "django.request"} <= loggers
    assert "uvicorn.access" not in loggers  # djserve's access line replaces it
    (access,) = [e for e in entries if e["logger"] == "djserve.access"]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/missing", 404)


def test_recycled_single_worker_keeps_serving(serve: Any) -> None:
    server = serve("--limit-max-requests", "3", "--limit-max-requests-jitter", "0")
    statuses = []
    for _ in range(12):  # spaced out, so the supervisor sees each recycled worker exit
        statuses.append(get(server.url("/-/health"), timeout=10)[0])
        time.sleep(0.25)
    assert statuses == [200] * 12
    code, err = server.stop()
    assert code == 0
    assert err.count("Started server process") >= 3


def test_prestart_steps_run_in_order_and_are_timed(site: Path, serve: Any) -> None:
    script = site / "prestart.sh"
    script.write_text("#!/bin/sh\ntest -f db.sqlite3 && echo prestart-saw-database\n")
    script.chmod(0o755)
    port = free_port()
    with socket.create_server(("127.0.0.1", port)):
        server = serve(
            DJSERVE_MIGRATE="true",
            DJSERVE_PRESTART=str(script),
            DJSERVE_WAIT_FOR=f"127.0.0.1:{port}",
        )
    _, err = server.stop()
    steps = [
        line.split("prestart ")[1].split(":")[0]
        for line in err.splitlines()
        if "prestart " in line and "done in" in line
    ]
    assert steps == ["wait_for", "migrate", "prestart"]
    assert (site / "db.sqlite3").exists()


def test_failing_prestart_step_is_named(site: Path) -> None:
    port = free_port()
    result = djserve(
        "serve",
        cwd=site,
        env={
            "DJANGO_SETTINGS_MODULE": "mysite.settings",
            "DJSERVE_WAIT_FOR": f"127.0.0.1:{port}",
            "DJSERVE_WAIT_TIMEOUT": "1",
        },
    )
    assert result.code == 1
    assert f"prestart step 'wait_for' failed: 127.0.0.1:{port} unreachable after 1s" in result.err


def test_sigterm_during_prestart_stops_promptly(site: Path) -> None:
    script = site / "prestart.sh"
    script.write_text("#!/bin/sh\nsleep 60\n")
    script.chmod(0o755)
    process = subprocess.Popen(
        [DJSERVE, "serve", "--port", str(free_port())],
        cwd=site,
        env=environment(DJANGO_SETTINGS_MODULE="mysite.settings", DJSERVE_PRESTART=str(script)),
        stderr=subprocess.PIPE,
        text=True,
    )
    # Stop it once the script runs; a watchdog ends the wait if it never does.
    watchdog = threading.Timer(60, process.kill)
    watchdog.start()
    assert process.stderr is not None
    seen = []
    for line in process.stderr:
        seen.append(line)
        if "prestart prestart: started" in line:
            break
    watchdog.cancel()
    assert "prestart prestart: started" in seen[-1], seen
    started = time.monotonic()
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=10)
    assert time.monotonic() - started < 5
    assert process.returncode == 128 + signal.SIGTERM


def test_other_commands_pass_through_unchanged(site: Path) -> None:
    assert djserve("echo", "hi", cwd=site).out == "hi\n"
    result = djserve(
        sys.executable, "manage.py", "migrate", "--noinput", cwd=site, env={"DJANGO_SETTINGS_MODULE": "mysite.settings"}
    )
    assert result.code == 0 and "Applying auth" in result.out
    assert djserve("no-such-program", cwd=site).code == 127


def test_printed_command_starts_the_same_server(site: Path) -> None:
    port = free_port()
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "DJSERVE_PRESET": "production", "UVICORN_PORT": str(port)}
    line = djserve("command", "--host", "127.0.0.1", "--workers", "1", cwd=site, env=env).out.strip()
    with printed_command(line, site, port, DJANGO_SETTINGS_MODULE="mysite.settings"):
        assert get(f"http://127.0.0.1:{port}/-/ready", EVIL)[0] == 200
        assert get(f"http://127.0.0.1:{port}/")[1].count(b"Django") > 0
    assert shlex.split(line)[0].startswith("DJSERVE_APP=")


def test_a_stopping_worker_closes_keep_alive_connections_cleanly(serve: Any) -> None:
    """Requests on open keep-alive connections are answered, with close, while the worker drains."""
    server = serve()
    health, ready = (http.client.HTTPConnection("127.0.0.1", server.port, timeout=5) for _ in range(2))
    for connection, path in ((health, "/-/health"), (ready, "/-/ready")):
        connection.request("GET", path)
        response = connection.getresponse()
        assert (response.status, response.getheader("connection")) == (200, None)
        response.read()
    server.process.send_signal(signal.SIGTERM)
    time.sleep(0.2)  # uvicorn notices the signal within 0.1 s; djserve then drains for 0.5 s
    health.request("GET", "/-/health")
    response = health.getresponse()
    assert (response.status, response.getheader("connection")) == (200, "close")
    ready.request("GET", "/-/ready")
    response = ready.getresponse()
    assert (response.status, response.read()) == (503, b"stopping\n")
    assert server.process.wait(timeout=10) == 0
