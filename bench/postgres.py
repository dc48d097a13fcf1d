"""PostgreSQL for the `/db` runs: one container, migrated once, a database per server, connection counts.

PostgreSQL runs on the load core (CPU 1, with wrk) and without a CPU quota, so that the server under
test keeps CPU 0 to itself; the servers reach it by its address on Docker's default bridge. Each
server gets its own copy of the migrated database, so `pg_stat_activity` tells whose connections are
whose while all servers run at once.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.containers import DEMO_ENV, LOAD_CPU, RUN_LABEL, docker, remove_ids

ROOT = Path(__file__).resolve().parent.parent
USER = PASSWORD = "bench"
TEMPLATE = "bench"  # POSTGRES_DB: migrated once, then copied for every server
PG_PORT = 5432
# Well above what any contender should hold, so that one server that leaks connections (a thread per
# request under Django's ASGI handler) shows its count instead of failing the others' requests.
MAX_CONNECTIONS = 1000


def image() -> str:
    """POSTGRES_IMAGE, from the environment or from the .env that `make base-images` writes."""
    if "POSTGRES_IMAGE" in os.environ:
        return os.environ["POSTGRES_IMAGE"]
    env_file = ROOT / ".env"
    lines = env_file.read_text().splitlines() if env_file.exists() else []
    found = next((line.split("=", 1)[1].strip() for line in lines if line.startswith("POSTGRES_IMAGE=")), None)
    if not found:
        raise RuntimeError("POSTGRES_IMAGE is set neither in the environment nor in .env (`make base-images`)")
    return found


def database(server: str) -> str:
    return "bench_" + re.sub(r"\W", "_", server).lower()


@dataclass(frozen=True)
class Postgres:
    id: str
    host: str

    def url(self, name: str) -> str:
        return f"postgres://{USER}:{PASSWORD}@{self.host}:{PG_PORT}/{name}"

    def sql(self, query: str) -> str:
        # Over the container's local socket, which initdb trusts, to the maintenance database.
        return docker(
            "exec", self.id, "psql", "-U", USER, "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", query
        )

    def connections(self) -> dict[str, int]:
        """Backends per database, this query's own excepted."""
        rows = self.sql(
            "SELECT datname, count(*) FROM pg_stat_activity "
            "WHERE datname IS NOT NULL AND pid <> pg_backend_pid() GROUP BY datname"
        )
        return {name: int(count) for name, count in (row.split("|") for row in rows.splitlines() if row)}


def _wait(pg: Postgres, timeout: float) -> None:
    # Over TCP: the first start initialises the cluster behind a server that listens on the socket only.
    deadline = time.monotonic() + timeout
    probe = ["docker", "exec", pg.id, "pg_isready", "-q", "-h", "127.0.0.1", "-U", USER, "-d", TEMPLATE]
    while subprocess.run(probe, capture_output=True, check=False).returncode != 0:
        if time.monotonic() > deadline:
            log = subprocess.run(["docker", "logs", pg.id], capture_output=True, text=True, check=False)
            raise TimeoutError(
                f"PostgreSQL not ready within {timeout:.0f} s; log:\n{(log.stdout + log.stderr)[-3000:]}"
            )
        time.sleep(0.2)


@contextmanager
def running(databases: Iterable[str], migrate_with: str, timeout: float) -> Iterator[Postgres]:
    """PostgreSQL with the demo's migrations applied once, copied into each of `databases`."""
    credentials = (f"POSTGRES_USER={USER}", f"POSTGRES_PASSWORD={PASSWORD}", f"POSTGRES_DB={TEMPLATE}")
    env = [arg for assignment in credentials for arg in ("-e", assignment)]
    flags = ("-c", f"max_connections={MAX_CONNECTIONS}")
    cid = docker("run", "-d", "--label", RUN_LABEL, "--cpuset-cpus", LOAD_CPU, *env, image(), *flags)
    try:
        pg = Postgres(cid, docker("inspect", "-f", "{{.NetworkSettings.IPAddress}}", cid))
        _wait(pg, timeout)
        demo_env = [arg for name, value in DEMO_ENV.items() for arg in ("-e", f"{name}={value}")]
        url = f"DATABASE_URL={pg.url(TEMPLATE)}"
        docker("run", "--rm", *demo_env, "-e", url, migrate_with, "python", "manage.py", "migrate", "--noinput")
        for name in databases:
            pg.sql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        yield pg
    finally:
        remove_ids(cid)
