"""Failed requests while `limit-max-requests` recycles workers under continuous load.

The preset as a user gets it, and (full run) the same with uvicorn's worker healthcheck timeout at
1 s instead of 5 s: the supervisor notices an exited worker only when a healthcheck ping to it
times out, and serves no one else meanwhile (see findings.md).
"""

from __future__ import annotations

import re
from typing import Any

from bench import wrk
from bench.containers import Spec, running, wait_for_200
from bench.plan import Plan

IMAGE = "djserve-demo:production"
PATH = "/async"
RECYCLED = re.compile(r"Maximum request limit of \d+ exceeded")
HEALTHCHECK_1S = {"UVICORN_TIMEOUT_WORKER_HEALTHCHECK": "1"}


def scenario(plan: Plan, extra_env: dict[str, str]) -> dict[str, Any]:
    env = {"UVICORN_WORKERS": "2", "UVICORN_LIMIT_MAX_REQUESTS": str(plan.recycle_max_requests), **extra_env}
    if plan.recycle_jitter is not None:
        env["UVICORN_LIMIT_MAX_REQUESTS_JITTER"] = str(plan.recycle_jitter)
    with running(Spec(IMAGE, (), env)) as (container,):
        wait_for_200(container, PATH, plan.ready_timeout)
        load = wrk.run(container, PATH, plan.recycle_seconds, plan.connections)
        recycles = len(RECYCLED.findall(container.logs()))
    if recycles == 0:
        raise RuntimeError(f"no worker recycled in {load.requests} requests; raise the load or lower the limit")
    return {
        "image": IMAGE,
        "env": env,
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
    found = {"preset": scenario(plan, {})}
    if plan.recycle_healthcheck_1s:
        found["healthcheck_1s"] = scenario(plan, HEALTHCHECK_1S)
    return found
