"""Requests a second, p99 and failed requests of every server on every path, interleaved round by round.

All servers run at once, idle but for the one under load, each with its own database on one
PostgreSQL. Within a round, servers compared with each other run back to back on the same path, so a
burst of other work on the machine hits both sides of a ratio alike; odd rounds run in reverse order
so neither side always goes first. After each `/db` run, PostgreSQL reports how many connections the
server holds; the most of these is reported.
"""

from __future__ import annotations

import dataclasses
import statistics
import time
from dataclasses import dataclass
from typing import Any

from bench import postgres, wrk
from bench.containers import running, wait_for_200
from bench.plan import Plan
from bench.procstat import total_rss_mb
from bench.servers import DB_PATH, READY_PATH, SERVERS_IMAGE, Server, contenders

# Time for requests that wrk gave up on to finish before connections are counted.
SETTLE_SECONDS = 0.3


@dataclass(frozen=True)
class Measured:
    entries: list[dict[str, Any]]
    memory_mb: dict[str, float]  # each container's RSS (all processes) after its load
    pg_connections: dict[str, int]  # connections each server holds after its /db runs
    failed_requests: dict[str, int]  # over every measured run of the server, all paths
    servers: dict[str, dict[str, Any]]  # what each contender runs


def _describe(server: Server) -> dict[str, Any]:
    return {
        "image": server.spec.image,
        "interface": server.interface,
        "command": " ".join(server.spec.command) or None,  # None: the image's own `djserve serve`
        "env": dict(server.spec.env),
    }


def measure(plan: Plan, servers: tuple[Server, ...] | None = None) -> Measured:
    """Every contender, or the ``servers`` given."""
    servers = servers or contenders()
    names = [postgres.database(s.name) for s in servers]
    with postgres.running(names, SERVERS_IMAGE, plan.ready_timeout) as pg:
        specs = [
            dataclasses.replace(s.spec, env={**s.spec.env, "DATABASE_URL": pg.url(name)})
            for s, name in zip(servers, names, strict=True)
        ]
        with running(*specs) as containers:
            pairs = list(zip(servers, containers, strict=True))
            for container in containers:
                wait_for_200(container, READY_PATH, plan.ready_timeout)
            paths = dict.fromkeys(path for server in servers for path in server.paths)
            combos = [(s, c, path) for path in paths for s, c in pairs if path in s.paths]
            if plan.warmup_seconds:
                for _, container, path in combos:
                    wrk.run(container, path, plan.warmup_seconds, plan.connections)
            loads: dict[tuple[str, str], list[wrk.Load]] = {(s.name, p): [] for s, _, p in combos}
            # The most connections a server holds right after a /db run: counted at the end instead, a
            # server whose last /db run is minutes old may have closed them for age (CONN_MAX_AGE).
            held: dict[str, int] = {}
            for round_no in range(plan.rounds):
                for server, container, path in combos[:: -1 if round_no % 2 else 1]:
                    loads[server.name, path].append(wrk.run(container, path, plan.seconds, plan.connections))
                    if path == DB_PATH:
                        time.sleep(SETTLE_SECONDS)
                        name = postgres.database(server.name)
                        held[name] = max(held.get(name, 0), pg.connections().get(name, 0))
            memory = {server.name: round(total_rss_mb(container), 1) for server, container in pairs}
    pg_connections = {s.name: held.get(name, 0) for s, name in zip(servers, names, strict=True) if DB_PATH in s.paths}
    entries = [_entry(server, path, loads[server.name, path], pg_connections) for server, _, path in combos]
    failed = {s.name: sum(e["failed"] for e in entries if e["server"] == s.name) for s in servers}
    return Measured(entries, memory, pg_connections, failed, {s.name: _describe(s) for s in servers})


def _entry(server: Server, path: str, runs: list[wrk.Load], pg_connections: dict[str, int]) -> dict[str, Any]:
    entry = {
        "server": server.name,
        "path": path,
        "interface": server.interface,
        "rps": round(statistics.median(r.rps for r in runs), 1),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 2),
        "failed": sum(r.failed for r in runs),
        "rounds_rps": [round(r.rps, 1) for r in runs],
    }
    if path == DB_PATH:
        entry["pg_connections"] = pg_connections[server.name]
    return entry


def ratio(entries: list[dict[str, Any]], server: str, baseline: str, path: str) -> float | None:
    """The median of the per-round ratios (each pair ran seconds apart); None if the baseline served nothing."""
    rounds: dict[tuple[str, str], list[float]] = {(e["server"], e["path"]): e["rounds_rps"] for e in entries}
    pairs = list(zip(rounds[server, path], rounds[baseline, path], strict=True))
    if any(b == 0 for _, b in pairs):
        return None
    return round(statistics.median(a / b for a, b in pairs), 3)
