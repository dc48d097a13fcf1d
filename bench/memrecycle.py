"""Failed requests and throughput while `max_worker_memory` recycles leaking workers under continuous load.

Two workers of the production preset serve `/leak` of the bench image's `benchleak` project (the demo
plus a view that keeps `kib` KiB a request); the same run without `max_worker_memory` is the baseline,
where the workers only grow. The leak is smaller than 1 MiB a request so that the baseline's growth stays
well inside the machine's memory within the run: at the thousands of requests a second one CPU serves,
1 MiB a request would add gigabytes a second.
"""

from __future__ import annotations

import re
import statistics
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
        "path": path,
        "rps": load.rps,
        "recycles": recycles,
        "errors": load.errors,
        "p99_ms": load.p99_ms,
        "max_ms": load.max_ms,
        "container_mb_after": anon + tmpfs,
    }


def _summary(spec: Spec, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds together: medians of speed and latency, sums of recycles and errors, the worst maximum."""
    errors = {name: sum(r["errors"][name] for r in runs) for name in runs[0]["errors"]}
    return {
        "image": IMAGE,
        "env": dict(spec.env),
        "path": runs[0]["path"],
        "rps": round(statistics.median(r["rps"] for r in runs), 1),
        "rounds_rps": [round(r["rps"], 1) for r in runs],
        "recycles": sum(r["recycles"] for r in runs),
        "failed_requests": sum(errors.values()),
        "errors": errors,
        "p99_ms": round(statistics.median(r["p99_ms"] for r in runs), 1),
        "max_ms": round(max(r["max_ms"] for r in runs), 1),
        "container_mb_after": round(max(r["container_mb_after"] for r in runs), 1),
    }


def measure(plan: Plan) -> dict[str, Any]:
    """Rounds of both runs, alternating which goes first: on this machine one run's requests/s varies by
    a third from one container to the next, so the ratio is the median of the rounds' ratios."""
    limited = {**ENV, "DJSERVE_MAX_WORKER_MEMORY": str(plan.max_worker_memory_mib)}
    specs = {"max_worker_memory": Spec(IMAGE, (), limited), "unlimited": Spec(IMAGE, (), ENV)}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
    for round_ in range(plan.memory_recycle_rounds):
        for name in list(specs)[:: 1 if round_ % 2 == 0 else -1]:
            runs[name].append(scenario(plan, specs[name]))
    ratios = [
        w["rps"] / u["rps"] for w, u in zip(runs["max_worker_memory"], runs["unlimited"], strict=True) if u["rps"]
    ]
    return {
        **{name: _summary(specs[name], runs[name]) for name in specs},
        "throughput_ratio": round(statistics.median(ratios), 3) if ratios else None,
    }
