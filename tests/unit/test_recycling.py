"""Recycling: by requests, memory or lifetime, the successor serves before the worker it replaces stops;
a crash loop backs off and says why; the metrics directory stays bounded whatever the number of recycles."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Load, Logged, djserve, get, value, wait_until

PRODUCTION = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "DJSERVE_PRESET": "production"}
LEAK = """
from django.http import HttpResponse

HELD = []

def leak(request):
    HELD.append(b"x" * (8 << 20))  # written, so it is the worker's own memory
    return HttpResponse(str(len(HELD)))

urlpatterns.append(path("leak", leak))
"""


def restarts(server: Logged, reason: str) -> float:
    return value(server, "djserve_worker_restarts_total", reason=reason)


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"DJSERVE_MAX_WORKER_MEMORY": "lots"},
            "DJSERVE_MAX_WORKER_MEMORY (environment): 'lots' is not a valid integer",
        ),
        ({"DJSERVE_MAX_WORKER_MEMORY": "16"}, "DJSERVE_MAX_WORKER_MEMORY (environment): 16 is not in the range x>=32"),
        (
            {"DJSERVE_MAX_WORKER_LIFETIME": "0"},
            "DJSERVE_MAX_WORKER_LIFETIME (environment): 0.0 is not in the range x>0",
        ),
        ({"DJSERVE_MAX_WORKER_LIFETIME": "-5"}, "DJSERVE_MAX_WORKER_LIFETIME (environment): -5.0 is not in the range"),
        ({"DJSERVE_MAX_WORKER_LIFETIME": "soon"}, "DJSERVE_MAX_WORKER_LIFETIME (environment): 'soon' is not a valid"),
    ],
)
def test_bad_limits_exit_78_naming_their_source(site: Path, env: dict[str, str], line: str) -> None:
    result = djserve("check", cwd=site, env={"DJANGO_SETTINGS_MODULE": "mysite.settings", **env})
    assert result.code == 78
    assert len(result.lines) == 1 and result.lines[0].startswith(line), result.lines


def test_a_worker_above_max_worker_memory_is_replaced_with_no_failed_request(
    site: Path, logged: Callable[..., Logged]
) -> None:
    urls = site / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + LEAK)
    server = logged("--max-worker-memory", "64", **PRODUCTION)
    (first,) = server.workers()
    with Load(server) as load:
        for _ in range(8):
            assert get(server.url("/leak"))[0] == 200
        server.wait_for(f"Child process [{first}] uses", 10)
        server.wait_for(f"Child process [{first}] ended: recycled", 10)
        time.sleep(0.5)
    assert load.failed == [] and load.answered > 0
    (successor,) = server.workers()
    assert successor != first
    assert get(server.url("/leak"))[1] == b"1"  # a fresh worker
    wait_until(lambda: restarts(server, "max_memory") == 1, 5, "the restart counted")


def test_workers_past_max_worker_lifetime_are_replaced_with_no_failed_request(
    logged: Callable[..., Logged],
) -> None:
    server = logged("--max-worker-lifetime", "1.5", workers=2, **PRODUCTION)
    first = set(server.workers())
    with Load(server) as load:
        wait_until(lambda: not first & set(server.workers()), 15, "both workers replaced")
    assert load.failed == [] and load.answered > 0
    assert len(server.workers()) == 2
    assert restarts(server, "max_lifetime") >= 2
    assert "Recycling child process" in server.text() and "(max_lifetime): its successor first" in server.text()


def test_a_worker_at_its_request_limit_is_replaced_once_its_successor_serves(
    logged: Callable[..., Logged],
) -> None:
    server = logged("--limit-max-requests", "40", "--limit-max-requests-jitter", "0", **PRODUCTION)
    (first,) = server.workers()
    with Load(server) as load:
        server.wait_for(f"Child process [{first}] ended: recycled", 20)
        time.sleep(0.5)
    assert load.failed == [] and load.answered > 40
    log = server.text()
    recycling = log.index(f"Recycling child process [{first}] (max_requests)")
    (successor,) = server.workers()
    # The old worker was stopped only once its successor had started serving.
    assert log.index(f"Started server process [{successor}]") > recycling
    assert log.index(f"Terminated child process [{first}]") > log.index(f"Started server process [{successor}]")
    wait_until(lambda: restarts(server, "max_requests") >= 1, 5, "the restart counted")


def test_fifty_recycled_workers_leave_a_bounded_number_of_metric_files(
    tmp_path: Path, logged: Callable[..., Logged]
) -> None:
    directory = tmp_path / "metrics"
    server = logged(
        "--limit-max-requests",
        "1",
        "--limit-max-requests-jitter",
        "0",
        PROMETHEUS_MULTIPROC_DIR=str(directory),
        **PRODUCTION,
    )
    sent = 0

    def fifty_recycles() -> bool:
        nonlocal sent
        for _ in range(5):
            assert get(server.url("/missing"))[0] == 404
            sent += 1
        return restarts(server, "max_requests") >= 50

    wait_until(fifty_recycles, 90, "fifty recycles by max_requests", pause=0.2)
    files = sorted(path.name for path in directory.glob("*.db"))
    # A live worker's four files, a successor's, a worker not folded yet, and one merged set: not 50 sets.
    assert len(files) <= 16, files
    # Every count kept; a live worker's last second of counts is written within the next second.
    wait_until(
        lambda: value(server, "djserve_requests_total", method="GET", status="404") == sent, 5, f"{sent} counted"
    )
    assert value(server, "djserve_worker_starts_total") == 1 + restarts(server, "max_requests")


CRASHING = """
import os
from pathlib import Path

def make():
    if Path(os.environ["CRASH_MARKER"]).exists():
        raise RuntimeError("the database is down")
    from django.core.asgi import get_asgi_application
    return get_asgi_application()
"""


def test_a_crash_loop_backs_off_says_why_and_fails_the_health_probe(
    site: Path, tmp_path: Path, logged: Callable[..., Logged]
) -> None:
    (site / "crashing.py").write_text(CRASHING)
    marker = tmp_path / "down"
    server = logged("--factory", DJSERVE_APP="crashing:make", CRASH_MARKER=str(marker), **PRODUCTION)
    (first,) = server.workers()
    marker.touch()
    import os
    import signal

    os.kill(first, signal.SIGKILL)
    server.wait_for("the next starts in 2.0s", 15)
    lines = [line for line in server.text().splitlines() if "workers keep dying" in line]
    assert "(the last: exit code 1, ending: " in lines[0] and "RuntimeError: the database is down);" in lines[0]
    assert [line.rpartition(" in ")[2] for line in lines] == ["0.5s", "1.0s", "2.0s"]  # one line each, growing
    assert not server.answers()  # no worker serves: the probe fails
    marker.unlink()
    wait_until(server.answers, 15, "a worker to serve again")
