"""Failed requests and throughput while `max_worker_memory` recycles leaking workers under continuous load.

Two workers of the production preset serve `/leak` of the bench image's `benchleak` project (the demo
plus a view that keeps `kib` KiB a request); the same run without `max_worker_memory` is the baseline,
where the workers only grow. The leak is smaller than 1 MiB a request so that the baseline's growth stays
well inside the machine's memory within the run: at the thousands of requests a second one CPU serves,
1 MiB a request would add gigabytes a second.
"""

from __future__ import annotations

import re
from typing import Any

from bench import wrk
from bench.containers import Spec, running, wait_for_200
from bench.plan import Plan
from bench.procstat import in_memory_mb, memory_stat
from bench.servers import SERVERS_IMAGE

IMAGE = SERVERS_IMAGE
ENV = {"PYTHONPATH": "/opt/bench", "DJANGO_SETTINGS_MODULE": "benchleak.settings", "UVICORN_WORKERS": "2"}
READY_PATH = "/sync"
# The supervisor's line as it starts a successor for a worker above max_worker_memory.
RECYCLED = re.compile(r"Recycling child process \[\d+\] \(max_memory\)")


def scenario(plan: Plan, spec: Spec) -> dict[str, Any]:
    path = f"/leak?kib={plan.leak_kib}"
    with running(spec) as (container,):
        wait_for_200(container, READY_PATH, plan.ready_timeout)
        load = wrk.run(container, path, plan.memory_recycle_seconds, plan.connections)
        anon, tmpfs = in_memory_mb(memory_stat(container))
        recycles = len(RECYCLED.findall(container.logs()))
    return {
        "image": IMAGE,
        "env": dict(spec.env),
        "path": path,
        "requests": load.requests,
        "rps": round(load.rps, 1),
        "recycles": recycles,
        "failed_requests": load.failed,
        "errors": load.errors,
        "p99_ms": round(load.p99_ms, 1),
        "max_ms": round(load.max_ms, 1),
        "container_mb_after": round(anon + tmpfs, 1),
    }


def measure(plan: Plan) -> dict[str, Any]:
    limited = {**ENV, "DJSERVE_MAX_WORKER_MEMORY": str(plan.max_worker_memory_mib)}
    with_limit = scenario(plan, Spec(IMAGE, (), limited))
    without = scenario(plan, Spec(IMAGE, (), ENV))
    ratio = round(with_limit["rps"] / without["rps"], 3) if without["rps"] else None
    return {"max_worker_memory": with_limit, "unlimited": without, "throughput_ratio": ratio}
