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
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

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


def wait_until(check: Callable[[], bool], timeout: float, what: str, pause: float = 0.1) -> None:
    """Every wait of the unit tests: bounded, and it says what it waited for when it gives up."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def wait_until_answers(url: str, timeout: float, process: subprocess.Popen[str] | None = None) -> None:
    """Until ``url`` answers 200; fails at once, with the process's stderr, if ``process`` exits first."""

    def answers() -> bool:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"exited with {process.returncode} before {url} answered: {process.communicate()[1]}")
        try:
            return get(url, timeout=1)[0] == 200
        except OSError:
            return False

    try:
        wait_until(answers, timeout, f"{url} to answer 200")
    except AssertionError as error:
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            raise AssertionError(f"{error}: {process.communicate()[1]}") from None
        raise


@dataclass
class Server:
    process: subprocess.Popen[str]
    port: int

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)

    def stop(self, timeout: float = 30) -> tuple[int, str]:
        self.process.send_signal(signal.SIGTERM)
        _, err = self.process.communicate(timeout=timeout)
        return self.process.returncode, err


def start(cwd: Path, *args: str, ready: str = "/-/health", **env: str) -> Server:
    """`djserve serve` on a free port, returned once `ready` answers 200."""
    port = free_port()
    process = subprocess.Popen(
        [DJSERVE, "serve", "--host", "127.0.0.1", "--port", str(port), *args],
        cwd=cwd,
        env=environment(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # so a failed test can end the workers too
    )
    server = Server(process, port)
    try:
        wait_until_answers(server.url(ready), 30, process)
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
        server.process.communicate()


@contextlib.contextmanager
def printed_command(line: str, cwd: Path, port: int, **env: str) -> Iterator[None]:
    """Runs a line printed by `djserve command` (plain uvicorn from this venv); yields once it answers health."""
    bin_dir = Path(sys.executable).parent
    process = subprocess.Popen(
        ["sh", "-c", line],
        cwd=cwd,
        env={**environment(**env), "PATH": f"{bin_dir}:/usr/bin:/bin"},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_until_answers(f"http://127.0.0.1:{port}/-/health", 20, process)
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=20)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Unit tests start real servers but none takes minutes: a hang fails with its stack after two."""
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(120))
