"""The supervisor: a dead or stuck worker is replaced, the supervisor itself stays small and stays put."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import DJSERVE, Logged, environment, free_port, get, wait_until

PRODUCTION = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "DJSERVE_PRESET": "production"}


@pytest.fixture
def launch(logged: Callable[..., Logged]) -> Callable[[int], Logged]:
    """Start the production preset with N workers, serving the test's project; logs go to a file."""
    return lambda workers: logged(workers=workers, **PRODUCTION)


@pytest.fixture
def supervised(launch: Callable[[int], Logged]) -> Logged:
    return launch(1)


def blocking_view(site: Path, pid_file: Path | None = None) -> None:
    """/stuck: an async view that blocks its worker's event loop for 30 s (noting its pid first)."""
    note = f"    open({str(pid_file)!r}, 'w').write(str(os.getpid()))\n" if pid_file else ""
    urls = site / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text() + "\nimport os, time\nfrom django.http import HttpResponse\n"
        f"async def blocks_the_loop(request):\n{note}    time.sleep(30)\n    return HttpResponse('late')\n"
        "urlpatterns.append(path('stuck', blocks_the_loop))\n"
    )


def test_a_killed_worker_is_replaced_within_a_second(supervised: Logged) -> None:
    (worker,) = supervised.workers()
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    while supervised.workers() in ([], [worker]):
        assert time.monotonic() - killed < 1.0, supervised.text()
        time.sleep(0.01)
    while not supervised.answers():
        # The new worker imports Django first; a loaded machine gets a margin.
        assert time.monotonic() - killed < 5.0, supervised.text()
        time.sleep(0.01)
    assert supervised.process.poll() is None  # the container's main process stays
    assert get(supervised.url("/"))[0] == 200
    assert f"Child process [{worker}] ended: killed by SIGKILL" in supervised.text()


def test_the_supervisor_stays_small_and_imports_no_django(supervised: Logged) -> None:
    assert get(supervised.url("/"))[0] == 200  # the worker serves Django
    status = Path(f"/proc/{supervised.process.pid}/status").read_text()
    rss_kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    assert rss_kb < 30 * 1024, f"supervisor RSS {rss_kb} kB"


def test_a_worker_with_a_blocked_event_loop_is_reported_and_replaced(
    site: Path, launch: Callable[[int], Logged]
) -> None:
    blocking_view(site)
    server = launch(1)
    (stuck,) = server.workers()
    threading.Thread(target=lambda: server.answers("/stuck"), daemon=True).start()
    # production: timeout-worker-healthcheck = 2, a ping every 0.5 s, 1 s to write the stack; and a margin
    server.wait_for(f"worker {stuck} stuck", timeout=2 + 0.5 + 1 + 10)
    log = server.text()
    report = log[log.index(f"worker {stuck} stuck") :]
    assert "(WORKER TIMEOUT)" in report.splitlines()[0]
    assert "in blocks_the_loop" in report and "urls.py" in report, report
    server.wait_for(f"Child process [{stuck}] ended: killed by SIGKILL", timeout=10)
    wait_until(server.answers, 10, "the replacement to answer")
    assert stuck not in server.workers()


def test_a_broken_app_exits_78_before_binding(site: Path) -> None:
    (site / "mysite" / "asgi.py").write_text("raise RuntimeError('broken at import')\n")
    port = free_port()
    # Held open: had djserve bound the port before validating, it would fail with "address in use" (3).
    with socket.create_server(("127.0.0.1", port)):
        done = subprocess.run(
            [DJSERVE, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=site,
            env=environment(**PRODUCTION),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert done.returncode == 78, done.stderr
    assert "broken at import" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_stuck_worker_delays_no_other_workers_check(
    site: Path, tmp_path: Path, launch: Callable[[int], Logged]
) -> None:
    pid_file = tmp_path / "stuck.pid"
    blocking_view(site, pid_file)
    server = launch(2)
    threading.Thread(target=lambda: server.answers("/stuck"), daemon=True).start()
    wait_until(lambda: pid_file.exists() and bool(pid_file.read_text()), 10, "the stuck view's pid")
    stuck = int(pid_file.read_text())
    (other,) = set(server.workers()) - {stuck}
    os.kill(other, signal.SIGKILL)
    # The other worker's exit is seen at once, while the stuck one is still within its 2 s.
    server.wait_for(f"Child process [{other}] ended: killed by SIGKILL", timeout=1.5)
    assert f"worker {stuck} stuck" not in server.text()
    server.wait_for(f"worker {stuck} stuck", timeout=2 + 0.5 + 1 + 10)
    assert server.answers()
