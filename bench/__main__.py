"""`python -m bench [--smoke] --out DIR`: run every measurement, write the outputs, fail on a broken harness."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import footprint, recycle, report, startup, throughput, wsload
from bench.containers import docker, load_cpus_available, remove_run_leftovers
from bench.plan import FULL, SMOKE, Plan
from bench.servers import SERVERS_IMAGE

IMAGES = (SERVERS_IMAGE, *startup.IMAGES, *(f"djserve:{v}" for v in footprint.VARIANTS))


def preflight() -> None:
    missing = [tool for tool in ("docker", "wrk", "nsenter", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench: missing tools: {', '.join(missing)} (`make bench-tools`)")
    if not load_cpus_available():
        sys.exit("bench: needs CPUs 0 and 1: the servers run on one, the load on the other")
    absent = [image for image in IMAGES if not docker("image", "ls", "-q", image)]
    if absent:
        sys.exit(f"bench: images missing: {', '.join(absent)} (`make images bench-image`)")


def _sizes(plan: Plan) -> dict[str, Any]:
    sizes = footprint.sizes()
    return {"image_sizes": sizes, "kit_layers_mb": sizes["production"]["kit_layers_mb"]}


def _startup(plan: Plan) -> dict[str, Any]:
    presets = startup.measure(plan)
    # The slowest preset's ratio: the target holds only if it holds for every preset.
    return {"startup": presets, "startup_ratio": max(v["ratio"] for v in presets.values())}


def _throughput(plan: Plan) -> dict[str, Any]:
    entries, memory = throughput.measure(plan)
    return {
        "throughput": entries,
        "preset_vs_best_uvicorn": throughput.ratio(entries, "djserve", "uvicorn", "/async"),
        "wsgi_vs_gunicorn_gthread": throughput.ratio(entries, "djserve-wsgi", "gunicorn-gthread", "/sync"),
        "container_memory_mb": {name: round(mb, 1) for name, mb in memory.items()},
    }


def _rss(plan: Plan) -> dict[str, Any]:
    rss = footprint.rss_per_worker(plan)
    return {"rss_per_worker_mb": rss["djserve"], "rss_per_worker_mb_bare_uvicorn": rss["uvicorn"]}


def _websockets(plan: Plan) -> dict[str, Any]:
    ws = wsload.measure(plan)
    return {"websocket": ws, "ws_connections_held": ws["held"], "ws_echo_p99_ms": round(ws["echo_p99_ms"], 2)}


def _recycle(plan: Plan) -> dict[str, Any]:
    found = recycle.measure(plan)
    return {"recycle": found, "recycle_failed_requests": found["preset"]["failed_requests"]}


STEPS: tuple[tuple[str, Callable[[Plan], dict[str, Any]]], ...] = (
    ("image sizes", _sizes),
    ("startup", _startup),
    ("throughput", _throughput),
    ("rss per worker", _rss),
    ("websockets", _websockets),
    ("recycling", _recycle),
)


def run(plan: Plan) -> dict[str, Any]:
    results: dict[str, Any] = {"plan": plan.name, "params": dataclasses.asdict(plan), "machine": report.machine()}
    for name, step in STEPS:
        began = time.monotonic()
        results.update(step(plan))
        print(f"bench: {name} done in {time.monotonic() - began:.0f} s", flush=True)
    results["targets"] = report.targets(results)
    return results


def problems(results: dict[str, Any], plan: Plan) -> list[str]:
    """What shows the harness itself is broken; speed and the targets are reported, never asserted."""
    found = []
    numbers = (
        "startup_ratio",
        "preset_vs_best_uvicorn",
        "wsgi_vs_gunicorn_gthread",
        "kit_layers_mb",
        "rss_per_worker_mb",
        "ws_echo_p99_ms",
    )
    for key in numbers:
        value = results.get(key)
        if not isinstance(value, float | int) or not math.isfinite(value) or value <= 0:
            found.append(f"{key} is not a positive number: {value!r}")
    if results["ws_connections_held"] != plan.ws_sockets:
        found.append(f"held {results['ws_connections_held']} of {plan.ws_sockets} WebSockets")
    if results["websocket"]["echoes"] == 0:
        found.append("no WebSocket echo came back")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every measurement briefly (< 2 min)")
    parser.add_argument("--out", type=Path, required=True, help="where results.json, RESULTS.md, the chart go")
    parser.add_argument("--render", action="store_true", help="only rewrite RESULTS.md and the chart from results.json")
    args = parser.parse_args()
    if args.render:
        report.write(json.loads((args.out / "results.json").read_text()), args.out)
        return
    plan = SMOKE if args.smoke else FULL
    preflight()
    try:
        results = run(plan)
    finally:
        remove_run_leftovers()
    report.write(results, args.out)
    print(f"bench: wrote {args.out}/results.json, RESULTS.md, throughput.png", flush=True)
    broken = problems(results, plan)
    if broken:
        sys.exit("bench: the harness is broken:\n  " + "\n  ".join(broken))


if __name__ == "__main__":
    main()
