"""The production preset under hostile clients, during a wrk run on /sync, against the same run without them.

The hostile client (bench/attack.py) runs on the load core beside wrk: slowloris connections that
never finish their request head, requests with unterminated multi-megabyte headers, and one huge POST
streamed as fast as the server takes it. Reported: throughput relative to the clean run, the growth
of what the container holds in memory (sampled from its cgroup throughout), and how many slowloris
connections the server closed within `header_timeout` (from `djserve config`) plus the allowance. A
pair of runs moves by 10 % from one to the next on a shared machine, so the full run takes three.
"""

from __future__ import annotations

import json
import math
import statistics
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
    """``plan.hostile_rounds`` pairs of runs, clean then under attack: one pair moves by 10 % from run to run."""
    header_timeout = float(commands.config(IMAGE, {})["header_timeout"])
    observe = header_timeout + GRACE_SECONDS + WATCH_MARGIN_SECONDS
    seconds = plan.hostile_seconds or math.ceil(header_timeout + GRACE_SECONDS)
    clean: list[wrk.Load] = []
    hostile: list[wrk.Load] = []
    rounds: list[tuple[dict[str, Any], dict[str, float]]] = []  # each attack's report and memory growth
    with running(Spec(IMAGE)) as (container,):
        wait_for_200(container, PATH, plan.ready_timeout)
        if plan.warmup_seconds:
            wrk.run(container, PATH, plan.warmup_seconds, plan.connections)
        for _ in range(plan.hostile_rounds):
            clean.append(wrk.run(container, PATH, seconds, plan.connections))
            with peak_memory(container) as samples:
                load, attack = _attacked(container, plan, seconds, observe)
            hostile.append(load)
            rounds.append((attack, _memory(samples)))
    # The round that held the most memory, and the one whose slowloris connections closed the least.
    attack, memory = max(rounds, key=lambda r: r[1]["rss_growth_mb"])
    slowloris = min((_slowloris(a["slowloris"], header_timeout + GRACE_SECONDS) for a, _ in rounds), key=_closed)
    return {
        "image": IMAGE,
        "path": PATH,
        "seconds": seconds,
        "rounds": plan.hostile_rounds,
        "header_timeout_s": header_timeout,
        "clean_rps": round(statistics.median(r.rps for r in clean), 1),
        "hostile_rps": round(statistics.median(r.rps for r in hostile), 1),
        "clean_failed": sum(r.failed for r in clean),
        "hostile_failed": sum(r.failed for r in hostile),
        "throughput_ratio": _ratio(clean, hostile),
        **memory,
        "slowloris": slowloris,
        "headers": attack["headers"],
        "post": attack["post"],
    }


def _attacked(container: Container, plan: Plan, seconds: int, observe: float) -> tuple[wrk.Load, dict[str, Any]]:
    """One wrk run while the hostile client attacks, and the client's report."""
    client = _attack(container, plan, seconds, observe)
    try:
        assert client.stdout is not None
        started = client.stdout.readline()  # the slowloris connections are open (bounded in the client)
        if started.strip() != "STARTED":
            raise RuntimeError(f"hostile client did not start: {started!r}")
        load = wrk.run(container, PATH, seconds, plan.connections)
        out, _ = client.communicate(timeout=observe + seconds + 60)
    finally:
        if client.poll() is None:
            client.kill()
    if client.returncode != 0 or not out.strip():
        raise RuntimeError(f"hostile client failed ({client.returncode}): {out[-1000:]}")
    report: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return load, report


def _ratio(clean: list[wrk.Load], hostile: list[wrk.Load]) -> float | None:
    """The median of each round's hostile / clean requests/s."""
    if any(c.rps == 0 for c in clean):
        return None
    return round(statistics.median(h.rps / c.rps for c, h in zip(clean, hostile, strict=True)), 3)


def _closed(slowloris: dict[str, Any]) -> float:
    fraction: float | None = slowloris["closed_fraction"]
    return -1.0 if fraction is None else fraction


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
