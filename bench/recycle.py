"""Failed requests while `limit-max-requests` recycles workers under continuous load."""

from __future__ import annotations

import re
from typing import Any

from bench import wrk
from bench.containers import Spec, running, wait_for_200
from bench.plan import Plan

IMAGE = "djserve-demo:production"
PATH = "/async"
RECYCLED = re.compile(r"Maximum request limit of \d+ exceeded")


def measure(plan: Plan) -> dict[str, Any]:
    env = {"UVICORN_WORKERS": "2", "UVICORN_LIMIT_MAX_REQUESTS": str(plan.recycle_max_requests)}
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
        "recycles": recycles,
        "failed_requests": load.failed,
        "errors": load.errors,
    }
