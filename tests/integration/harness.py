"""Helpers of the image tests: docker, plain HTTP, bounded waits, containers and the compose stack."""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import waiting

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = str(REPO / "docker-compose.yml")
# The flags the README gives for production: what every app container here runs with.
HARDENED = (
    "--read-only", "--tmpfs", "/tmp:size=256m", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
)  # fmt: skip
# The demo refuses to start without a secret key; it signs nothing that must outlive a process.
DEMO_ENV = {"DJANGO_EPHEMERAL_SECRET_KEY": "1"}


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=check)


def base_image(name: str, official: str) -> str:
    """The base image `make base-images` recorded in .env (as compose reads it), else the official one."""
    env = REPO / ".env"
    for line in env.read_text().splitlines() if env.exists() else ():
        key, _, value = line.partition("=")
        if key == name and value:
            return value
    return official


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case

    def json(self) -> Any:
        return json.loads(self.body)


def _headers(response: http.client.HTTPResponse) -> dict[str, str]:
    return {name.lower(): value for name, value in response.getheaders()}


def http_get(url: str, headers: Mapping[str, str] | None = None, timeout: float = 15) -> Response:
    """One GET on a new connection; http.client, so no proxy variable can reroute it."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request("GET", target, headers=dict(headers or {}))
        response = connection.getresponse()
        return Response(response.status, response.read(), _headers(response))
    finally:
        connection.close()


def request(
    url: str,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 15,
) -> Response:
    """One request of any method on a new connection."""
    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
    try:
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        connection.request(method, target, body=body, headers=dict(headers or {}))
        response = connection.getresponse()
        return Response(response.status, response.read(), _headers(response))
    finally:
        connection.close()


@dataclass
class Load:
    """What a bounded load run got back: every status, and every error instead of a status."""

    statuses: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def load(url: str, requests: int, connections: int, timeout: float = 30) -> Load:
    """`requests` GETs spread over `connections` keep-alive clients at once, each request bounded."""
    parts = urllib.parse.urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    result = Load()
    lock = threading.Lock()

    def client(count: int) -> None:
        connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout)
        try:
            for _ in range(count):
                try:
                    connection.request("GET", target)
                    response = connection.getresponse()
                    response.read()
                    with lock:
                        result.statuses.append(response.status)
                except (OSError, http.client.HTTPException) as error:
                    with lock:
                        result.errors.append(repr(error))
                    connection.close()  # a new connection for the next request
        finally:
            connection.close()

    shares = [requests // connections + (i < requests % connections) for i in range(connections)]
    threads = [threading.Thread(target=client, args=(share,)) for share in shares if share]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return result


def wait_until(check: Callable[[], bool], timeout: float, what: str, pause: float = 0.25) -> None:
    """The shared wait, polling less often by default: each check here is a docker command."""
    waiting.wait_until(check, timeout, what, pause)


@dataclass(frozen=True)
class Container:
    id: str

    def inspect(self, template: str) -> str:
        return docker("inspect", "-f", template, self.id).stdout.strip()

    def port(self, container_port: int = 8000) -> int:
        return int(docker("port", self.id, f"{container_port}/tcp").stdout.splitlines()[0].rpartition(":")[2])

    def url(self, path: str = "/", container_port: int = 8000) -> str:
        return f"http://127.0.0.1:{self.port(container_port)}{path}"

    def health(self) -> str:
        return self.inspect("{{if .State.Health}}{{.State.Health.Status}}{{end}}")

    def wait_healthy(self, timeout: float = 60) -> None:
        def healthy() -> bool:
            status = self.health()
            assert status != "unhealthy", self.logs()
            assert self.inspect("{{.State.Running}}") == "true", self.logs()
            return status == "healthy"

        wait_until(healthy, timeout, f"container {self.id[:12]} to become healthy")

    def exec(self, *command: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return docker("exec", self.id, *command, timeout=timeout)

    def logs(self) -> str:
        result = docker("logs", self.id, check=False)
        return result.stdout + result.stderr


# start_container(image, *command, env=..., options=..., health_interval=...)
StartContainer = Callable[..., Container]


@dataclass(frozen=True)
class Stack:
    services: Any  # pytest_docker's Services
    project: str

    def url(self, service: str, container_port: int, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.services.port_for(service, container_port)}{path}"

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return docker("compose", "-f", COMPOSE_FILE, "-p", self.project, *args, check=check)

    def exec(self, service: str, *command: str) -> subprocess.CompletedProcess[str]:
        return self.compose("exec", "-T", service, *command, check=False)

    def container(self, service: str) -> Container:
        return Container(self.compose("ps", "-q", service).stdout.strip())


def run_container(
    image: str,
    *command: str,
    env: Mapping[str, str] | None = None,
    options: tuple[str, ...] = HARDENED,
    health_interval: str = "1s",
) -> Container:
    """A detached container with port 8000 published on a free 127.0.0.1 port; the caller removes it."""
    env_args = [item for name, value in (env or {}).items() for item in ("-e", f"{name}={value}")]
    container_id = docker(
        "run", "-d", f"--health-interval={health_interval}", "-p", "127.0.0.1::8000",
        *options, *env_args, image, *command,
    ).stdout.strip()  # fmt: skip
    return Container(container_id)
