"""The supervisor: a dead or stuck worker is replaced, the supervisor itself stays small and stays put."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import DJSERVE, environment, free_port, get

PRODUCTION = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "DJSERVE_PRESET": "production"}


@dataclass
class Supervised:
    process: subprocess.Popen[str]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def text(self) -> str:
        return self.log.read_text()

    def workers(self) -> list[int]:
        """The supervisor's worker processes (uvicorn spawns them; the resource tracker is not one)."""
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text().split()
        workers = []
        for pid in map(int, children):
            with contextlib.suppress(OSError):
                if b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                    workers.append(pid)
        return workers

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds until `text` is in the log."""
        started = time.monotonic()
        while text not in self.text():
            assert time.monotonic() - started < timeout, f"{text!r} not logged:\n{self.text()}"
            time.sleep(0.05)
        return time.monotonic() - started


def answers(server: Supervised, path: str = "/-/health") -> bool:
    try:
        return get(server.url(path), timeout=1)[0] == 200
    except OSError:
        return False


@pytest.fixture
def launch(site: Path, tmp_path: Path) -> Iterator[Callable[[int], Supervised]]:
    """Start the production preset with N workers, serving the test's project; logs go to a file."""
    started: list[subprocess.Popen[str]] = []

    def _launch(workers: int) -> Supervised:
        port = free_port()
        log = tmp_path / f"djserve-{port}.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [DJSERVE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
                cwd=site,
                env=environment(**PRODUCTION),
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        started.append(process)
        server = Supervised(process, port, log)
        deadline = time.monotonic() + 30
        while not answers(server) or len(server.workers()) < workers:
            assert process.poll() is None, server.text()
            assert time.monotonic() < deadline, server.text()
            time.sleep(0.1)
        return server

    yield _launch
    for process in started:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@pytest.fixture
def supervised(launch: Callable[[int], Supervised]) -> Supervised:
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


def test_a_killed_worker_is_replaced_within_a_second(supervised: Supervised) -> None:
    (worker,) = supervised.workers()
    os.kill(worker, signal.SIGKILL)
    killed = time.monotonic()
    while supervised.workers() in ([], [worker]):
        assert time.monotonic() - killed < 1.0, supervised.text()
        time.sleep(0.01)
    while not answers(supervised):
        # The new worker imports Django first; a loaded machine gets a margin.
        assert time.monotonic() - killed < 5.0, supervised.text()
        time.sleep(0.01)
    assert supervised.process.poll() is None  # the container's main process stays
    assert get(supervised.url("/"))[0] == 200
    assert f"Child process [{worker}] ended: killed by SIGKILL" in supervised.text()


def test_the_supervisor_stays_small_and_imports_no_django(supervised: Supervised) -> None:
    assert get(supervised.url("/"))[0] == 200  # the worker serves Django
    status = Path(f"/proc/{supervised.process.pid}/status").read_text()
    rss_kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    assert rss_kb < 30 * 1024, f"supervisor RSS {rss_kb} kB"


def test_a_worker_with_a_blocked_event_loop_is_reported_and_replaced(
    site: Path, launch: Callable[[int], Supervised]
) -> None:
    blocking_view(site)
    server = launch(1)
    (stuck,) = server.workers()
    threading.Thread(target=lambda: answers(server, "/stuck"), daemon=True).start()
    # production: timeout-worker-healthcheck = 2, a ping every 0.5 s, 1 s to write the stack; and a margin
    server.wait_for(f"worker {stuck} stuck", timeout=2 + 0.5 + 1 + 10)
    log = server.text()
    report = log[log.index(f"worker {stuck} stuck") :]
    assert "(WORKER TIMEOUT)" in report.splitlines()[0]
    assert "in blocks_the_loop" in report and "urls.py" in report, report
    server.wait_for(f"Child process [{stuck}] ended: killed by SIGKILL", timeout=10)
    deadline = time.monotonic() + 10
    while not answers(server):
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.1)
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
    site: Path, tmp_path: Path, launch: Callable[[int], Supervised]
) -> None:
    pid_file = tmp_path / "stuck.pid"
    blocking_view(site, pid_file)
    server = launch(2)
    threading.Thread(target=lambda: answers(server, "/stuck"), daemon=True).start()
    deadline = time.monotonic() + 10
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.01)
    stuck = int(pid_file.read_text())
    (other,) = set(server.workers()) - {stuck}
    os.kill(other, signal.SIGKILL)
    # The other worker's exit is seen at once, while the stuck one is still within its 2 s.
    server.wait_for(f"Child process [{other}] ended: killed by SIGKILL", timeout=1.5)
    assert f"worker {stuck} stuck" not in server.text()
    server.wait_for(f"worker {stuck} stuck", timeout=2 + 0.5 + 1 + 10)
    assert answers(server)
