"""Requests a second and p99 of every server on every path, interleaved round by round.

All servers run at once, idle but for the one under load. Within a round, servers compared with
each other run back to back on the same path, so a burst of other work on the machine hits both
sides of a ratio alike; odd rounds run in reverse order so neither side always goes first.
"""

from __future__ import annotations

import statistics
from typing import Any

from bench import wrk
from bench.containers import running, wait_for_200
from bench.plan import Plan
from bench.procstat import total_rss_mb
from bench.servers import SERVERS, Server


def _check(server: Server, path: str, load: wrk.Load) -> None:
    if load.requests == 0 or load.failed:
        raise RuntimeError(f"{server.name} {path}: {load.requests} requests, errors {load.errors}")


def measure(plan: Plan) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """The throughput entries, and each server's container memory (MB, all processes) after its load."""
    with running(*(server.spec for server in SERVERS)) as containers:
        pairs = list(zip(SERVERS, containers, strict=True))
        for server, container in pairs:
            wait_for_200(container, server.paths[0], plan.ready_timeout)
        paths = dict.fromkeys(path for server in SERVERS for path in server.paths)
        combos = [(s, c, path) for path in paths for s, c in pairs if path in s.paths]
        for server, container, path in combos:
            _check(server, path, wrk.run(container, path, plan.warmup_seconds, plan.connections))
        loads: dict[tuple[str, str], list[wrk.Load]] = {(s.name, p): [] for s, _, p in combos}
        for round_no in range(plan.rounds):
            for server, container, path in combos[:: -1 if round_no % 2 else 1]:
                load = wrk.run(container, path, plan.seconds, plan.connections)
                _check(server, path, load)
                loads[server.name, path].append(load)
        memory = {server.name: total_rss_mb(container) for server, container in pairs}
    return [_entry(server, path, loads[server.name, path]) for server, _, path in combos], memory


def _entry(server: Server, path: str, runs: list[wrk.Load]) -> dict[str, Any]:
    return {
        "server": server.name,
        "path": path,
        "interface": server.interface,
        "rps": round(statistics.median(r.rps for r in runs), 1),
        "p99_ms": round(statistics.median(r.p99_ms for r in runs), 2),
        "rounds_rps": [round(r.rps, 1) for r in runs],
    }


def ratio(entries: list[dict[str, Any]], server: str, baseline: str, path: str) -> float:
    """The median of the per-round ratios: each round's pair ran minutes apart at most."""
    rounds: dict[tuple[str, str], list[float]] = {(e["server"], e["path"]): e["rounds_rps"] for e in entries}
    pairs = zip(rounds[server, path], rounds[baseline, path], strict=True)
    return round(statistics.median(a / b for a, b in pairs), 3)
