"""The measurement behind the default of ``threads``: the production preset with several thread counts.

The same interleaved rounds as the throughput step, on ``/sync`` and ``/db``, each thread count in its
own container with its own database, and the PostgreSQL connections each holds afterwards.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench import throughput
from bench.containers import Spec
from bench.plan import Plan
from bench.servers import DB_PATH, SERVERS_IMAGE, Server

COUNTS = (2, 4, 8, 16)
PATHS = ("/sync", DB_PATH)


def measure(plan: Plan) -> dict[str, Any]:
    servers = tuple(
        Server(f"threads-{n}", "hybrid", PATHS, Spec(SERVERS_IMAGE, (), {"DJSERVE_THREADS": str(n)})) for n in COUNTS
    )
    # Half the rounds of the main comparison: this is a sweep, not a ratio against another server.
    found = throughput.measure(dataclasses.replace(plan, rounds=max(1, plan.rounds // 2)), servers)
    by_server = {(e["server"], e["path"]): e for e in found.entries}
    return {
        str(n): {
            **{
                path: {
                    "rps": by_server[f"threads-{n}", path]["rps"],
                    "p99_ms": by_server[f"threads-{n}", path]["p99_ms"],
                }
                for path in PATHS
            },
            "pg_connections": found.pg_connections[f"threads-{n}"],
            "failed_requests": found.failed_requests[f"threads-{n}"],
        }
        for n in COUNTS
    }
