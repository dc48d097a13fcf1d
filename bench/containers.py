"""Server containers: one CPU each, pinned to the server core, while the load runs on the other core.

Load generators enter the container's network namespace and aim at 127.0.0.1:8000 inside it. Going
through a published port instead would put Docker's userland proxy, a process on neither pinned core,
between the load and the server, and every server's figure would include the proxy's copying.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

SERVER_CPU = "0"
LOAD_CPU = "1"
PORT = 8000
# One label a run, so cleanup removes this run's containers and no one else's.
RUN_LABEL = f"djserve-bench.run={uuid.uuid4().hex[:12]}"
# The demo signs nothing that outlives a process, so a random key per process is enough (its README).
DEMO_ENV = {"DJANGO_EPHEMERAL_SECRET_KEY": "1"}
# The app containers' production profile, as in the README's `docker run` examples and staging: read-only
# root, /tmp in memory with a size (request bodies spool there), no privileges.
HARDENING = ("--read-only", "--tmpfs", "/tmp:size=256m", "--cap-drop", "ALL", "--security-opt", "no-new-privileges")
# One CPU, the server core: also where `djserve command` and `djserve config` are asked, since the
# preset's worker count follows the CPU limit.
LIMITS = ("--cpus", "1", "--cpuset-cpus", SERVER_CPU)


@dataclass(frozen=True)
class Spec:
    """What to run: an image, its command (empty for the image's default) and extra environment."""

    image: str
    command: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Container:
    id: str
    host_port: int

    def load_prefix(self) -> list[str]:
        """Runs a host program inside this container's network namespace, pinned to the load core."""
        pid = docker("inspect", "-f", "{{.State.Pid}}", self.id)
        return ["nsenter", "-t", pid, "-n", "taskset", "-c", LOAD_CPU]

    def logs(self) -> str:
        done = subprocess.run(["docker", "logs", self.id], capture_output=True, text=True, check=False)
        return done.stdout + done.stderr


def docker(*args: str) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def run_args(spec: Spec, host_port: int) -> list[str]:
    env = [arg for name, value in {**DEMO_ENV, **spec.env}.items() for arg in ("-e", f"{name}={value}")]
    publish = ("-p", f"127.0.0.1:{host_port}:{PORT}")
    return ["docker", "run", "-d", "--label", RUN_LABEL, *HARDENING, *LIMITS, *publish, *env, spec.image, *spec.command]


def start(spec: Spec) -> Container:
    host_port = free_port()
    done = subprocess.run(run_args(spec, host_port), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"docker run {spec.image} failed: {done.stderr.strip()}")
    return Container(done.stdout.strip(), host_port)


def remove_ids(*ids: str) -> None:
    """Removes containers with their anonymous volumes (PostgreSQL's data directory is one)."""
    if ids:
        subprocess.run(["docker", "rm", "-f", "-v", *ids], capture_output=True, check=False)


def remove(*containers: Container) -> None:
    remove_ids(*(c.id for c in containers))


def remove_run_leftovers() -> None:
    remove_ids(*docker("ps", "-aq", "--filter", f"label={RUN_LABEL}").split())


@contextmanager
def running(*specs: Spec) -> Iterator[list[Container]]:
    started: list[Container] = []
    try:
        started.extend(start(spec) for spec in specs)
        yield started
    finally:
        remove(*started)


def get_status(port: int, path: str, timeout: float = 2.0) -> int | None:
    """The status of one GET on a published port, or None while nothing answers yet."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Host": "localhost"})
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def wait_for_200(container: Container, path: str, timeout: float, interval: float = 0.005) -> None:
    """Returns once GET `path` answers 200; the error carries the container's log if it never does."""
    began = time.perf_counter()
    deadline = began + timeout
    checked = began
    while time.perf_counter() < deadline:
        if get_status(container.host_port, path) == 200:
            return
        if time.perf_counter() - checked > 1:  # a server that exited will never answer
            checked = time.perf_counter()
            if docker("inspect", "-f", "{{.State.Running}}", container.id) != "true":
                raise RuntimeError(
                    f"{container.id[:12]} exited before {path} answered; log:\n{container.logs()[-3000:]}"
                )
        time.sleep(interval)
    raise TimeoutError(f"{path} never answered 200 within {timeout:.0f} s; log:\n{container.logs()[-3000:]}")


def load_cpus_available() -> bool:
    return {int(SERVER_CPU), int(LOAD_CPU)} <= os.sched_getaffinity(0)
