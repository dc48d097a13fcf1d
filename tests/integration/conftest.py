"""Fixtures for the image tests: the compose staging stack and single containers, all real.

Images come from `make images` (the `integration` target depends on it); nothing here builds them,
except the tests whose subject is building. Every wait is bounded.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pytest

from harness import COMPOSE_FILE, HARDENED, Container, Stack, StartContainer, docker, run_container

# The staging stack's published ports, chosen free by the engine so that a running `make up` or
# another test run does not collide.
STAGING_PORTS = (
    "STAGING_WEB_PORT", "STAGING_PROXY_PORT", "STAGING_PROXY_TLS_PORT", "STAGING_WS_PORT",
    "STAGING_PROMETHEUS_PORT",
)  # fmt: skip


@pytest.fixture
def start_container() -> Iterator[StartContainer]:
    """Starts detached containers with port 8000 published on a free 127.0.0.1 port; removes them."""
    started: list[str] = []

    def start(
        image: str,
        *command: str,
        env: Mapping[str, str] | None = None,
        options: Sequence[str] = HARDENED,
        health_interval: str = "1s",
    ) -> Container:
        container = run_container(
            image, *command, env=env, options=tuple(options), health_interval=health_interval
        )
        started.append(container.id)
        return container

    yield start
    for container_id in started:
        docker("rm", "-f", container_id, check=False, timeout=60)


# pytest-docker: the repository's own docker-compose.yml, under a project name of its own.
@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return COMPOSE_FILE


@pytest.fixture(scope="session")
def docker_compose_project_name() -> str:
    return f"djserve-it-{os.getpid()}"


@pytest.fixture(scope="session")
def docker_compose_command() -> str:
    # pytest-docker runs this through a shell, for `up` and `port` alike.
    return "env " + " ".join(f"{name}=0" for name in STAGING_PORTS) + " docker compose"


@pytest.fixture(scope="session")
def docker_setup() -> list[str]:
    return ["up -d --wait --wait-timeout 180"]


@pytest.fixture(scope="session")
def docker_cleanup() -> list[str]:
    return ["down --volumes --remove-orphans --timeout 30"]


@pytest.fixture(scope="session")
def stack(docker_services: Any, docker_compose_project_name: str) -> Stack:
    """The staging stack of docker-compose.yml, up and healthy (`up --wait`) for the whole session."""
    return Stack(docker_services, docker_compose_project_name)
