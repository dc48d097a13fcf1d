"""The demo on a real PostgreSQL: migrations, one query per request, connections bounded by threads.

Each test's PostgreSQL runs on a network of its own, so that its connection counts are the demo's alone.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from harness import (
    DEMO_ENV,
    HARDENED,
    Container,
    StartContainer,
    base_image,
    docker,
    http_get,
    load,
    wait_until,
)

DEMO = "djserve-demo:production"
POSTGRES_IMAGE = base_image("POSTGRES_IMAGE", "postgres:17-trixie")
USER = PASSWORD = "djserve"
# Not the user's name, so that the image's entrypoint must create it on the first start.
FIRST_DATABASE = "djserve_it"


@dataclass(frozen=True)
class Postgres:
    container: Container
    network: str

    def psql(self, sql: str, database: str = FIRST_DATABASE) -> str:
        result = self.container.exec("psql", "-U", USER, "-d", database, "-v", "ON_ERROR_STOP=1", "-Atc", sql)
        return result.stdout.strip()

    def create_database(self) -> str:
        name = f"it_{uuid.uuid4().hex[:10]}"
        self.psql(f"CREATE DATABASE {name}")
        return name

    def connections(self, database: str) -> int:
        return int(self.psql(f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}'"))

    def url(self, database: str) -> str:
        return f"postgres://{USER}:{PASSWORD}@postgres:5432/{database}"


StartPostgres = Callable[..., Postgres]


@pytest.fixture(scope="module")
def start_postgres() -> Iterator[StartPostgres]:
    """Starts PostgreSQL (extra server flags allowed) as `postgres` on a new network; removes both."""
    started: list[tuple[str, str]] = []

    def start(*flags: str) -> Postgres:
        network = f"djserve-it-pg-{os.getpid()}-{len(started)}"
        docker("network", "create", network)
        container_id = docker(
            "run", "-d", "--network", network, "--network-alias", "postgres", "--user", "postgres",
            "--read-only", "--tmpfs", "/tmp", "--tmpfs", "/var/run/postgresql", "--cap-drop", "ALL",
            "-e", f"POSTGRES_USER={USER}", "-e", f"POSTGRES_PASSWORD={PASSWORD}",
            "-e", f"POSTGRES_DB={FIRST_DATABASE}", POSTGRES_IMAGE, *flags,
        ).stdout.strip()  # fmt: skip
        started.append((container_id, network))
        container = Container(container_id)

        def ready() -> bool:
            assert container.inspect("{{.State.Running}}") == "true", container.logs()
            # Over TCP: during the first start's initialisation the server listens on its socket only.
            command = ("pg_isready", "-h", "127.0.0.1", "-U", USER, "-d", FIRST_DATABASE)
            probe = docker("exec", container_id, *command, check=False)
            return probe.returncode == 0

        wait_until(ready, 90, "PostgreSQL to accept connections", pause=0.5)
        return Postgres(container, network)

    yield start
    for container_id, network in started:
        docker("rm", "-f", "-v", container_id, check=False, timeout=60)
        docker("network", "rm", network, check=False)


@pytest.fixture(scope="module")
def postgres(start_postgres: StartPostgres) -> Postgres:
    return start_postgres()


def start_demo(start_container: StartContainer, postgres: Postgres, database: str, **env: str) -> Container:
    container = start_container(
        DEMO, env={**DEMO_ENV, "DATABASE_URL": postgres.url(database), **env},
        options=(*HARDENED, "--network", postgres.network),
    )  # fmt: skip
    container.wait_healthy()
    return container


def test_migrations_apply_to_postgresql(postgres: Postgres) -> None:
    database = postgres.create_database()
    env = {**DEMO_ENV, "DATABASE_URL": postgres.url(database)}
    migrate = docker(
        "run", "--rm", *HARDENED, "--network", postgres.network, *(f"--env={k}={v}" for k, v in env.items()),
        DEMO, "python", "manage.py", "migrate", "--noinput",
    )  # fmt: skip
    assert "Applying auth.0001_initial... OK" in migrate.stdout
    applied = postgres.psql("SELECT count(*) FROM django_migrations WHERE app = 'auth'", database)
    assert int(applied) >= 12
    assert postgres.psql("SELECT to_regclass('auth_user') IS NOT NULL", database) == "t"


THREADS, WORKERS = 4, 2


@pytest.mark.parametrize("interface", ["wsgi", "asgi", "hybrid"])
def test_db_view_holds_at_most_threads_connections_per_worker(
    postgres: Postgres, start_container: StartContainer, interface: str
) -> None:
    database = postgres.create_database()
    container = start_demo(
        start_container, postgres, database,
        DJSERVE_INTERFACE=interface, DJSERVE_THREADS=str(THREADS), UVICORN_WORKERS=str(WORKERS),
    )  # fmt: skip
    answer = http_get(container.url("/db")).json()
    assert answer["vendor"] == "postgresql"
    assert answer["ok"] is True
    result = load(container.url("/db"), requests=300, connections=32)
    assert result.errors == []
    assert Counter(result.statuses) == {200: 300}
    # CONN_MAX_AGE (60 s) keeps them open: one per thread that ran a query, never one per request.
    assert 1 <= postgres.connections(database) <= THREADS * WORKERS


def test_more_connections_than_postgresql_allows_answer_500_with_its_error(
    start_postgres: StartPostgres, start_container: StartContainer
) -> None:
    postgres = start_postgres("-c", "max_connections=5")
    database = postgres.create_database()
    container = start_demo(start_container, postgres, database, DJSERVE_THREADS="8", UVICORN_WORKERS="1")
    started = time.monotonic()
    result = load(container.url("/db"), requests=96, connections=32, timeout=30)
    # Every request answered, none hanging: PostgreSQL refuses at once and Django answers 500.
    assert result.errors == []
    assert time.monotonic() - started < 60
    statuses = Counter(result.statuses)
    assert set(statuses) <= {200, 500}, statuses
    assert statuses[500] > 0, statuses
    logs = container.logs()
    assert "too many clients" in logs or "remaining connection slots" in logs, logs[-2000:]
