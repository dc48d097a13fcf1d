"""Failed requests while `limit-max-requests` recycles two workers under continuous load.

Scenarios: the preset as a user gets it; in the full run also the same with uvicorn's worker
healthcheck timeout at 1 s instead of 5 s (the supervisor notices an exited worker only when a
healthcheck ping to it times out, see findings.md), and the bare uvicorn command `djserve command`
prints for the same environment.
"""

from __future__ import annotations

import re
from typing import Any

from bench import wrk
from bench.commands import bare_uvicorn
from bench.containers import Spec, running, wait_for_200
from bench.plan import Plan

IMAGE = "djserve-demo:production"
PATH = "/async"
# uvicorn logs "exceeded" as a worker stops; djserve "reached" as it asks for a successor first.
RECYCLED = re.compile(r"Maximum request limit of \d+ (?:exceeded|reached)")


def scenarios(plan: Plan) -> dict[str, Spec]:
    env = {"UVICORN_WORKERS": "2", "UVICORN_LIMIT_MAX_REQUESTS": str(plan.recycle_max_requests)}
    if plan.recycle_jitter is not None:
        env["UVICORN_LIMIT_MAX_REQUESTS_JITTER"] = str(plan.recycle_jitter)
    found = {"preset": Spec(IMAGE, (), env)}
    if plan.recycle_compare:
        found["healthcheck_1s"] = Spec(IMAGE, (), {**env, "UVICORN_TIMEOUT_WORKER_HEALTHCHECK": "1"})
        found["bare_uvicorn"] = Spec(IMAGE, bare_uvicorn(IMAGE, env))
    return found


def scenario(plan: Plan, spec: Spec) -> dict[str, Any]:
    with running(spec) as (container,):
        wait_for_200(container, PATH, plan.ready_timeout)
        load = wrk.run(container, PATH, plan.recycle_seconds, plan.connections)
        recycles = len(RECYCLED.findall(container.logs()))
    if recycles == 0:
        raise RuntimeError(f"no worker recycled in {load.requests} requests; raise the load or lower the limit")
    return {
        "image": IMAGE,
        "env": dict(spec.env),
        "command": " ".join(spec.command) or None,
        "path": PATH,
        "requests": load.requests,
        "rps": round(load.rps, 1),
        "recycles": recycles,
        "failed_requests": load.failed,
        "errors": load.errors,
        "p99_ms": round(load.p99_ms, 1),
        "max_ms": round(load.max_ms, 1),
    }


def measure(plan: Plan) -> dict[str, Any]:
    return {name: scenario(plan, spec) for name, spec in scenarios(plan).items()}
