"""Preloaded workers (`preload`) on the `wagtail start` site: start-up with 4 workers against bare uvicorn,
container memory and per-worker RSS/PSS with preload on and off, and how soon a killed worker's
replacement answers.

Every container is the same image; preload off is `DJSERVE_PRELOAD=false`, and the bare side runs the
uvicorn command `djserve command` prints for the same environment (bench/commands.py).
"""

from __future__ import annotations

import os
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from djserve.serve.supervisor import CRASH_WINDOW

from bench import wagtailsite
from bench.commands import bare_uvicorn
from bench.containers import Container, Spec, get_status, remove, running, start, wait_for_200
from bench.plan import Plan
from bench.procstat import MB, in_memory_mb, memory_stat, pss_bytes, uvicorn_workers

WORKERS = 4
# Every worker, djserve's forked ones and uvicorn's spawned ones alike, logs this once it serves.
STARTED = "Started server process"
LOG_POLL = 0.05  # seconds between two reads of the log while waiting for every worker


def _spec(env: dict[str, str], bare: bool = False) -> Spec:
    env = {**wagtailsite.ENV, **env}
    return Spec(wagtailsite.IMAGE, bare_uvicorn(wagtailsite.IMAGE, env) if bare else (), env)


def wait_for_workers(container: Container, workers: int, timeout: float) -> None:
    """Returns once `workers` workers have said they serve; bounded by `timeout`."""
    deadline = time.perf_counter() + timeout
    while container.logs().count(STARTED) < workers:
        if time.perf_counter() > deadline:
            log = container.logs()[-3000:]
            raise TimeoutError(f"{workers} workers not started within {timeout:.0f} s; log:\n{log}")
        time.sleep(LOG_POLL)


def _time_to_200(spec: Spec, timeout: float) -> tuple[float, float]:
    """Seconds from `docker run` to the first 200 on the home page, and to the last worker's start line."""
    began = time.perf_counter()
    container = start(spec)
    try:
        wait_for_200(container, wagtailsite.HOME, timeout)
        first = time.perf_counter() - began
        wait_for_workers(container, WORKERS, timeout)
        return first, time.perf_counter() - began
    finally:
        remove(container)


def startup(plan: Plan) -> dict[str, Any]:
    """Time to first 200 with 4 workers, production preset / bare uvicorn, alternating who goes first."""
    env = {"UVICORN_WORKERS": str(WORKERS)}
    sides = {"preset": _spec(env), "bare_uvicorn": _spec(env, bare=True)}
    if plan.preload_startup_reps > 1:  # the first start after a build reads the image from disk
        for spec in sides.values():
            _time_to_200(spec, plan.ready_timeout)
    found: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
    for rep in range(plan.preload_startup_reps):
        for name in list(sides)[:: 1 if rep % 2 == 0 else -1]:
            found[name].append(_time_to_200(sides[name], plan.ready_timeout))
    preset, bare = found["preset"], found["bare_uvicorn"]
    return {
        "image": wagtailsite.IMAGE,
        "env": env,
        "bare_command": " ".join(sides["bare_uvicorn"].command),
        "preset_s": [round(first, 3) for first, _ in preset],
        "bare_uvicorn_s": [round(first, 3) for first, _ in bare],
        "preset_all_workers_s": [round(last, 3) for _, last in preset],
        "bare_uvicorn_all_workers_s": [round(last, 3) for _, last in bare],
        "ratio": round(statistics.median(p[0] / b[0] for p, b in zip(preset, bare, strict=True)), 3),
        "all_workers_ratio": round(statistics.median(p[1] / b[1] for p, b in zip(preset, bare, strict=True)), 3),
    }


def warm(container: Container, page: str, requests: int, concurrency: int) -> int:
    """Asks for `page` `requests` times, `concurrency` at once, each on a new connection, so that every
    worker takes some (a worker busy with one accepts the next less readily); returns how many got a 200.
    A count, not wrk's duration: a cold admin page takes longer than a short wrk run to answer at all."""
    with ThreadPoolExecutor(concurrency) as pool:
        statuses = list(pool.map(lambda _: get_status(container.host_port, page, timeout=30), range(requests)))
    return statuses.count(200)


def memory(plan: Plan) -> dict[str, Any]:
    """Container memory (anonymous + tmpfs, from its cgroup) and per-worker RSS/PSS with 4 workers, preload on
    and off, after every page has been asked for `warm_requests` times."""
    env = {"UVICORN_WORKERS": str(WORKERS)}
    sides = {"preload": _spec(env), "no_preload": _spec({**env, **wagtailsite.NO_PRELOAD})}
    out: dict[str, Any] = {"image": wagtailsite.IMAGE, "env": env, "pages": list(wagtailsite.PAGES)}
    with running(*sides.values()) as containers:
        for name, container in zip(sides, containers, strict=True):
            wait_for_200(container, wagtailsite.HOME, plan.ready_timeout)
            wait_for_workers(container, WORKERS, plan.ready_timeout)
            for page in wagtailsite.PAGES:
                answered = warm(container, page, plan.warm_requests, plan.connections)
                if answered != plan.warm_requests:
                    raise RuntimeError(f"{name}: {page} answered 200 to {answered} of {plan.warm_requests}")
            anon, tmpfs = in_memory_mb(memory_stat(container))
            workers = uvicorn_workers(container)
            if len(workers) != WORKERS:
                raise RuntimeError(f"{name}: expected {WORKERS} workers, found {workers}")
            out[name] = {
                "container_mb": round(anon + tmpfs, 1),
                "rss_per_worker_mb": round(statistics.mean(w.rss_bytes for w in workers) / MB, 1),
                "pss_per_worker_mb": round(statistics.mean(pss_bytes(w) for w in workers) / MB, 1),
            }
    out["ratio"] = round(out["preload"]["container_mb"] / out["no_preload"]["container_mb"], 3)
    return out


def _replacements(container: Container, began: float, plan: Plan) -> list[float]:
    """Kills the only worker `replacement_reps` times; `began` is when the container started."""
    times = []
    for _ in range(plan.replacement_reps):
        # A worker that dies within CRASH_WINDOW of its start counts as a young death, and repeated
        # young deaths are restarted after a back-off: each kill waits until the worker is older.
        time.sleep(max(0.0, CRASH_WINDOW + 0.5 - (time.perf_counter() - began)))
        (worker,) = uvicorn_workers(container)
        os.kill(worker.pid, signal.SIGKILL)
        killed = time.perf_counter()
        # One worker: whatever answers 200 after the kill is its replacement.
        wait_for_200(container, wagtailsite.HOME, plan.ready_timeout, interval=0.001)
        began = time.perf_counter()
        times.append(began - killed)
        if worker.pid in {w.pid for w in uvicorn_workers(container)}:
            raise RuntimeError(f"worker {worker.pid} survived SIGKILL")
    return times


def replacement(plan: Plan) -> dict[str, Any]:
    """Seconds from SIGKILL of the only worker to the first 200 on the home page, preload on and off. Both
    containers start together, so that their waits overlap; the kills are one container at a time."""
    env = {"UVICORN_WORKERS": "1"}
    sides = {"preload": _spec(env), "no_preload": _spec({**env, **wagtailsite.NO_PRELOAD})}
    out: dict[str, Any] = {"image": wagtailsite.IMAGE, "env": env}
    began = time.perf_counter()
    with running(*sides.values()) as containers:
        for container in containers:
            wait_for_200(container, wagtailsite.HOME, plan.ready_timeout)
        for name, container in zip(sides, containers, strict=True):
            times = _replacements(container, began, plan)
            out[name] = {"s": [round(t, 3) for t in times], "median_s": round(statistics.median(times), 3)}
    return out
