"""Fixtures: a fresh `django-admin startproject`, and djserve run as users run it, as a process."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from waiting import wait_until

DJSERVE = shutil.which("djserve", path=str(Path(sys.executable).parent)) or "djserve"


@pytest.fixture(scope="session")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stock startproject, untouched: no ASGI_APPLICATION, no PRODUCTION_PROCESSES."""
    root = tmp_path_factory.mktemp("startproject")
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(root)], check=True)
    return root


@pytest.fixture
def site(project: Path, tmp_path: Path) -> Path:
    """A copy of the stock project that a test may edit."""
    copy = tmp_path / "site"
    shutil.copytree(project, copy)
    return copy


def environment(**env: str) -> dict[str, str]:
    """The test process's environment without any djserve or uvicorn settings of the machine's own."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJSERVE_", "UVICORN_", "DJANGO_"))}
    for k in ("PORT", "WEB_CONCURRENCY", "FORWARDED_ALLOW_IPS"):
        base.pop(k, None)
    # The default mount point may exist on a developer's machine; tests choose their file explicitly.
    base["DJSERVE_CONFIG"] = os.devnull
    return {**base, **env}


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)

    @property
    def lines(self) -> list[str]:
        return self.err.splitlines()


def djserve(*args: str, cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 60) -> Result:
    done = subprocess.run(
        [DJSERVE, *args], cwd=cwd, env=environment(**(env or {})), capture_output=True, text=True, timeout=timeout
    )
    return Result(done.returncode, done.stdout, done.stderr)


def config(cwd: Path, *args: str, **env: str) -> dict[str, Any]:
    """`djserve config --json` as {name: value}, failing the test with djserve's own errors."""
    result = djserve("config", "--json", *args, cwd=cwd, env=env)
    assert result.code == 0, result.err
    return {name: entry["value"] for name, entry in result.json.items()}


def sources(cwd: Path, *args: str, **env: str) -> dict[str, str]:
    result = djserve("config", "--json", *args, cwd=cwd, env=env)
    assert result.code == 0, result.err
    return {name: entry["source"] for name, entry in result.json.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 5) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def log_file() -> IO[str]:
    """Where a server's output goes: a file, read when a test wants it. A pipe that nothing reads until the
    end would stall the server once it had written 64 KiB."""
    return tempfile.TemporaryFile("w+")


def read(log: IO[str]) -> str:
    log.seek(0)
    return log.read()


def wait_until_answers(url: str, timeout: float, process: subprocess.Popen[str], log: IO[str]) -> None:
    """Until ``url`` answers 200; fails at once, with the process's ``log``, if ``process`` exits first."""

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before {url} answered: {read(log)}")
        try:
            return get(url, timeout=1)[0] == 200
        except OSError:
            return False

    try:
        wait_until(answers, timeout, f"{url} to answer 200")
    except AssertionError as error:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise AssertionError(f"{error}: {read(log)}") from None
        raise


def children(pid: int) -> list[int]:
    with contextlib.suppress(OSError):
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return []


def process_name(pid: int) -> str:
    """The kernel's name of a process (``comm``): djserve names its preloaded process and forked workers."""
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/comm").read_text().strip()
    return ""


def workers_of(supervisor: int) -> list[int]:
    """The workers under a supervisor, forked by its preloaded process (or left to it, as orphans) or
    spawned (uvicorn's way: ``spawn_main``; the resource tracker is not one)."""
    found = []
    for pid in children(supervisor):
        found += [worker for worker in children(pid) if process_name(worker) == "djserve-worker"]
        with contextlib.suppress(OSError):
            if process_name(pid) == "djserve-worker" or b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
    return found


def preloaded_of(supervisor: int) -> int | None:
    return next((pid for pid in children(supervisor) if process_name(pid) == "djserve-preload"), None)


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int
    log: IO[str] | None = None  # its stdout and stderr

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        """SIGTERM, then its exit code and log once it has ended."""
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=timeout)
        return self.process.returncode, read(self.log) if self.log is not None else ""


def start(cwd: Path, *args: str, ready: str = "/-/health", **env: str) -> Server:
    """`djserve serve` on a free port, returned once `ready` answers 200."""
    port, log = free_port(), log_file()
    process = subprocess.Popen(
        [DJSERVE, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=cwd,
        env=environment(**env),
        stdout=log,
        stderr=log,
        text=True,
        start_new_session=True,  # so a failed test can end the workers too
    )
    server = Server(process, port, log)
    try:
        wait_until_answers(server.url(ready), 30, process, log)
    except AssertionError:
        server.kill()
        raise
    return server


@pytest.fixture
def serve(site: Path) -> Iterator[Any]:
    """Start servers in the test's project; any still running at the end are stopped."""
    started: list[Server] = []

    def _serve(*args: str, cwd: Path = site, ready: str = "/-/health", **env: str) -> Server:
        env.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        server = start(cwd, *args, ready=ready, **env)
        started.append(server)
        return server

    yield _serve
    for server in started:
        server.kill()
        server.process.wait()


@dataclass
class Logged:
    """A server whose log goes to a file, to be read while it runs, and whose processes can be found."""

    process: subprocess.Popen[str]
    port: int
    log: Path

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def text(self) -> str:
        return self.log.read_text()

    def wait_for(self, text: str, timeout: float) -> float:
        """Seconds until `text` is in the log."""
        started = time.monotonic()
        wait_until(lambda: text in self.text(), timeout, f"{text!r} in the log:\n{self.text()}", pause=0.05)
        return time.monotonic() - started

    def workers(self) -> list[int]:
        return workers_of(self.process.pid)

    def preloaded(self) -> int | None:
        return preloaded_of(self.process.pid)

    def answers(self, path: str = "/-/health") -> bool:
        try:
            return get(self.url(path), timeout=1)[0] == 200
        except OSError:
            return False


@pytest.fixture
def logged(site: Path, tmp_path: Path) -> Iterator[Callable[..., Logged]]:
    """Start `djserve serve ARGS` in the test's project, its log in a file, once it answers and runs `workers`
    workers; every one started is killed, process group and all, at the end."""
    started: list[subprocess.Popen[str]] = []

    def _logged(*args: str, workers: int = 1, cwd: Path = site, **env: str) -> Logged:
        env.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")
        port = free_port()
        log = tmp_path / f"djserve-{port}.log"
        with log.open("w") as stderr:
            process = subprocess.Popen(
                [DJSERVE, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers), *args],
                cwd=cwd,
                env=environment(**env),
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        started.append(process)
        server = Logged(process, port, log)

        def up() -> bool:
            assert process.poll() is None, server.text()
            return server.answers() and len(server.workers()) >= workers

        wait_until(up, 30, f"{workers} workers answering")
        return server

    yield _logged
    for process in started:
        # A stop, so that djserve removes its metrics directory; then whatever is left, killed.
        with contextlib.suppress(ProcessLookupError):
            process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Load:
    """A light, bounded load: one request at a time on a new connection, every failure counted."""

    def __init__(self, server: Server | Logged, path: str = "/admin/login/") -> None:
        self.url = server.url(path)
        self.answered = 0
        self.failed: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                status, _ = get(self.url, timeout=10)
            except OSError as error:
                self.failed.append(repr(error))
            else:
                if status == 200:
                    self.answered += 1
                else:
                    self.failed.append(str(status))
            time.sleep(0.01)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def samples(server: Server | Logged) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    status, body = get(server.url("/-/metrics"))
    assert status == 200, body
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(body.decode())
        for sample in family.samples
    }


def value(server: Server | Logged, name: str, **labels: str) -> float:
    return samples(server).get((name, frozenset(labels.items())), 0.0)


@contextlib.contextmanager
def printed_command(line: str, cwd: Path, port: int, ready: str = "/-/health", **env: str) -> Iterator[None]:
    """Runs a line printed by `djserve command` (plain uvicorn from this venv); yields once `ready` answers 200."""
    bin_dir, log = Path(sys.executable).parent, log_file()
    process = subprocess.Popen(
        ["sh", "-c", line],
        cwd=cwd,
        env={**environment(**env), "PATH": f"{bin_dir}:/usr/bin:/bin"},
        stderr=log,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until_answers(f"http://127.0.0.1:{port}{ready}", 20, process, log)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):  # already ended by a wait that gave up
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit tests start real servers but none takes minutes: a hang fails with its stack after two."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(120))
