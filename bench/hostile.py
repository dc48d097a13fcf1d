"""The production preset under hostile clients, during a wrk run on /sync, against the same run without them.

The hostile client (bench/attack.py) runs on the load core beside wrk: slowloris connections that
never finish their request head, requests with unterminated multi-megabyte headers, and one huge POST
streamed as fast as the server takes it. Reported: throughput relative to the clean run, the growth
of what the container holds in memory (sampled from its cgroup throughout), and how many slowloris
connections the server closed within `header_timeout` (from `djserve config`) plus the allowance.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench import commands, wrk
from bench.containers import PORT, Container, Spec, running, wait_for_200
from bench.plan import Plan
from bench.procstat import in_memory_mb, memory_stat

IMAGE = "djserve-demo:production"
PATH = "/sync"
GRACE_SECONDS = 2.0  # the target: every slowloris connection closed within header_timeout + 2 s
# Each slowloris connection is watched this much longer, so that a late close shows apart from none.
WATCH_MARGIN_SECONDS = 3.0
TRICKLE_SECONDS = 1.0  # one header line a second on each slowloris connection
SAMPLE_SECONDS = 0.1
ROOT = Path(__file__).resolve().parent.parent


@contextmanager
def peak_memory(container: Container) -> Iterator[list[tuple[float, float]]]:
    """Samples (anonymous MB, tmpfs MB) until the block ends; the list fills as it runs."""
    stat = memory_stat(container)
    samples = [in_memory_mb(stat)]
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(SAMPLE_SECONDS):
            samples.append(in_memory_mb(stat))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        yield samples
    finally:
        stop.set()
        sampler.join()
        samples.append(in_memory_mb(stat))


def _attack(container: Container, plan: Plan, seconds: int, observe: float) -> subprocess.Popen[str]:
    load = (
        f"--port={PORT}",
        f"--slowloris={plan.hostile_slowloris}",
        f"--interval={TRICKLE_SECONDS}",
        f"--observe={observe}",
        f"--headers={plan.hostile_headers}",
        f"--header-bytes={plan.hostile_header_mb * 10**6}",
        f"--post-bytes={plan.hostile_post_mb * 10**6}",
        f"--seconds={seconds}",
    )
    command = [*container.load_prefix(), sys.executable, "-m", "bench.attack", *load]
    return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)


def measure(plan: Plan) -> dict[str, Any]:
    header_timeout = float(commands.config(IMAGE, {})["header_timeout"])
    observe = header_timeout + GRACE_SECONDS + WATCH_MARGIN_SECONDS
    seconds = plan.hostile_seconds or math.ceil(header_timeout + GRACE_SECONDS)
    with running(Spec(IMAGE)) as (container,):
        wait_for_200(container, PATH, plan.ready_timeout)
        if plan.warmup_seconds:
            wrk.run(container, PATH, plan.warmup_seconds, plan.connections)
        clean = wrk.run(container, PATH, seconds, plan.connections)
        with peak_memory(container) as samples:
            client = _attack(container, plan, seconds, observe)
            try:
                assert client.stdout is not None
                started = client.stdout.readline()  # the slowloris connections are open (bounded in the client)
                if started.strip() != "STARTED":
                    raise RuntimeError(f"hostile client did not start: {started!r}")
                hostile = wrk.run(container, PATH, seconds, plan.connections)
                out, _ = client.communicate(timeout=observe + seconds + 60)
            finally:
                if client.poll() is None:
                    client.kill()
        if client.returncode != 0 or not out.strip():
            raise RuntimeError(f"hostile client failed ({client.returncode}): {out[-1000:]}")
    attack: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return {
        "image": IMAGE,
        "path": PATH,
        "seconds": seconds,
        "header_timeout_s": header_timeout,
        "clean_rps": round(clean.rps, 1),
        "hostile_rps": round(hostile.rps, 1),
        "clean_failed": clean.failed,
        "hostile_failed": hostile.failed,
        "throughput_ratio": round(hostile.rps / clean.rps, 3) if clean.rps else None,
        **_memory(samples),
        "slowloris": _slowloris(attack["slowloris"], header_timeout + GRACE_SECONDS),
        "headers": attack["headers"],
        "post": attack["post"],
    }


def _memory(samples: list[tuple[float, float]]) -> dict[str, float]:
    """Growth of the peak over the first sample, in total and by kind, MB."""
    anon, tmpfs = samples[0]
    return {
        "memory_before_mb": round(anon + tmpfs, 1),
        "rss_growth_mb": round(max(a + t for a, t in samples) - anon - tmpfs, 1),
        "anon_growth_mb": round(max(a for a, _ in samples) - anon, 1),
        "tmpfs_growth_mb": round(max(t for _, t in samples) - tmpfs, 1),
        "memory_after_mb": round(sum(samples[-1]), 1),
    }


def _slowloris(found: dict[str, Any], bound: float) -> dict[str, Any]:
    closed = [t for t in found["closed_after_s"] if t is not None]
    within = sum(1 for t in closed if t <= bound)
    return {
        "wanted": found["wanted"],
        "opened": found["opened"],
        "closed_within_bound": within,
        "closed_later": len(closed) - within,
        "still_open": len(found["closed_after_s"]) - len(closed),
        "closed_after_s_max": max(closed, default=None),
        "answers": found["answers"],
        "closed_fraction": round(within / found["opened"], 3) if found["opened"] else None,
    }
