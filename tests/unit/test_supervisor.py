"""The supervisor: a dead or stuck worker is replaced, the supervisor itself stays small and stays put."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
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
def supervised(site: Path, tmp_path: Path) -> Iterator[Supervised]:
    """The production preset with one worker, serving the test's project; logs go to a file."""
    port = free_port()
    log = tmp_path / "djserve.log"
    with log.open("w") as stderr:
        process = subprocess.Popen(
            [DJSERVE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=site,
            env=environment(**PRODUCTION),
            stderr=stderr,
            text=True,
            start_new_session=True,
        )
    server = Supervised(process, port, log)
    deadline = time.monotonic() + 30
    while not answers(server):
        assert process.poll() is None, server.text()
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.1)
    yield server
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


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
    print(f"serving again {time.monotonic() - killed:.2f}s after the kill")
    assert supervised.process.poll() is None  # the container's main process stays
    assert get(supervised.url("/"))[0] == 200
    assert f"Child process [{worker}] died" in supervised.text()


def test_the_supervisor_stays_small_and_imports_no_django(supervised: Supervised) -> None:
    assert get(supervised.url("/"))[0] == 200  # the worker serves Django
    status = Path(f"/proc/{supervised.process.pid}/status").read_text()
    rss_kb = int(next(line for line in status.splitlines() if line.startswith("VmRSS:")).split()[1])
    print(f"supervisor RSS {rss_kb} kB")
    assert rss_kb < 30 * 1024, f"supervisor RSS {rss_kb} kB"


def test_a_worker_with_a_blocked_event_loop_is_reported_and_replaced(site: Path, supervised: Supervised) -> None:
    urls = site / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text() + "\nimport time\nfrom django.http import HttpResponse\n"
        "async def blocks_the_loop(request):\n    time.sleep(30)\n    return HttpResponse('late')\n"
        "urlpatterns.append(path('stuck', blocks_the_loop))\n"
    )
    # The worker already imported urls.py: start a new one that reads the view.
    (worker,) = supervised.workers()
    os.kill(worker, signal.SIGKILL)
    supervised.wait_for(f"Child process [{worker}] died", timeout=10)
    while not answers(supervised):
        time.sleep(0.1)
    (stuck,) = supervised.workers()
    client = threading.Thread(target=lambda: answers(supervised, "/stuck"), daemon=True)
    client.start()
    # production: timeout-worker-healthcheck = 2; a ping every 0.5 s; 1 s to write the stack
    waited = supervised.wait_for(f"worker {stuck} stuck", timeout=2 + 0.5 + 1 + 10)
    log = supervised.text()
    assert "(WORKER TIMEOUT)" in log
    report = log[log.index(f"worker {stuck} stuck") :]
    assert "in blocks_the_loop" in report and "urls.py" in report, report
    supervised.wait_for(f"Child process [{stuck}] died", timeout=10)
    deadline = time.monotonic() + 10
    while not answers(supervised):
        assert time.monotonic() < deadline, supervised.text()
        time.sleep(0.1)
    assert stuck not in supervised.workers()
    assert waited < 2 + 0.5 + 1 + 10
    print(report[:1500])


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
