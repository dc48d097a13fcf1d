"""`python -m bench [--smoke] --out DIR`: run every measurement, write the outputs, fail on a broken harness."""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import (
    commands,
    footprint,
    hostile,
    memrecycle,
    postgres,
    preload,
    recycle,
    report,
    startup,
    threadcount,
    throughput,
    wsload,
)
from bench.containers import docker, load_cpus_available, remove_run_leftovers
from bench.plan import FULL, SMOKE, Plan
from bench.servers import SERVERS_IMAGE, WEBSOCKET_IMAGE

HERE = Path(__file__).resolve().parent
IMAGES = (SERVERS_IMAGE, WEBSOCKET_IMAGE, *startup.IMAGES, *(f"djserve:{v}" for v in footprint.VARIANTS))
# The hybrid presets' ratios, each against djserve's ASGI and WSGI modes.
HYBRID = ("djserve-hybrid", "djserve-websocket")
MODES = (("asgi", "djserve-asgi"), ("wsgi", "djserve-wsgi"))
# What bench/Dockerfile adds for the preload measurements: an image built before them lacks it.
BENCH_PROJECTS = ("/opt/bench/benchleak/urls.py", "/opt/bench/wagtail/db.sqlite3")


def preflight() -> None:
    missing = [tool for tool in ("docker", "wrk", "nsenter", "taskset") if shutil.which(tool) is None]
    if missing:
        sys.exit(f"bench: missing tools: {', '.join(missing)} (`make bench-tools`)")
    if not load_cpus_available():
        sys.exit("bench: needs CPUs 0 and 1: the servers run on one, the load on the other")
    try:
        images = (*dict.fromkeys(IMAGES), postgres.image())
    except RuntimeError as exc:
        sys.exit(f"bench: {exc}")
    absent = [image for image in images if not docker("image", "ls", "-q", image)]
    if absent:
        sys.exit(f"bench: images missing: {', '.join(absent)} (`make images bench-image`)")
    projects = subprocess.run(
        ["docker", "run", "--rm", SERVERS_IMAGE, "ls", *BENCH_PROJECTS],
        capture_output=True,
        check=False,
    )
    if projects.returncode != 0:
        sys.exit(f"bench: {SERVERS_IMAGE} lacks {' or '.join(BENCH_PROJECTS)} (`make bench-image`)")


def _sizes(plan: Plan) -> dict[str, Any]:
    sizes = footprint.sizes()
    return {"image_sizes": sizes, "kit_layers_mb": sizes["production"]["kit_layers_mb"]}


def _startup(plan: Plan) -> dict[str, Any]:
    presets = startup.measure(plan)
    # The slowest preset's ratio: the target holds only if it holds for every preset.
    return {"startup": presets, "startup_ratio": max(v["ratio"] for v in presets.values())}


def _throughput(plan: Plan) -> dict[str, Any]:
    found = throughput.measure(plan)

    def ratio(server: str, baseline: str, path: str) -> float | None:
        return throughput.ratio(found.entries, server, baseline, path)

    hybrid = {
        preset: {
            f"vs_{mode}_{path.strip('/')}": ratio(preset, server, path)
            for mode, server in MODES
            for path in ("/sync", "/async", "/db")
            if (server, path) in {(e["server"], e["path"]) for e in found.entries}
        }
        for preset in HYBRID
    }
    return {
        "throughput": found.entries,
        "servers": found.servers,
        "threads": commands.threads(SERVERS_IMAGE),
        "asgi_async_vs_uvicorn": ratio("djserve-asgi", "uvicorn", "/async"),
        "asgi_sync_vs_uvicorn": ratio("djserve-asgi", "uvicorn", "/sync"),
        "asgi_db_vs_uvicorn": ratio("djserve-asgi", "uvicorn", "/db"),
        "wsgi_vs_gunicorn_gthread": ratio("djserve-wsgi", "gunicorn-gthread", "/sync"),
        "wsgi_db_vs_gunicorn_gthread": ratio("djserve-wsgi", "gunicorn-gthread", "/db"),
        "hybrid": hybrid,
        "hybrid_vs_asgi_sync": hybrid["djserve-hybrid"]["vs_asgi_sync"],
        "hybrid_vs_wsgi_sync": hybrid["djserve-hybrid"]["vs_wsgi_sync"],
        "hybrid_vs_asgi_async": hybrid["djserve-hybrid"]["vs_asgi_async"],
        "pg_connections": found.pg_connections,
        "failed_requests": found.failed_requests,
        "container_memory_mb": found.memory_mb,
    }


def _threads(plan: Plan) -> dict[str, Any]:
    return {"threads_sweep": threadcount.measure(plan)}


def _rss(plan: Plan) -> dict[str, Any]:
    rss = footprint.rss_per_worker(plan)
    return {
        "worker_memory": rss,
        "rss_per_worker_mb": rss["djserve"]["rss_mb"],
        "rss_per_worker_mb_no_preload": rss["djserve_no_preload"]["rss_mb"],
        "rss_per_worker_mb_bare_uvicorn": rss["uvicorn"]["rss_mb"],
        "pss_per_worker_mb": rss["djserve"]["pss_mb"],
        "pss_per_worker_mb_no_preload": rss["djserve_no_preload"]["pss_mb"],
        "pss_per_worker_mb_bare_uvicorn": rss["uvicorn"]["pss_mb"],
    }


def _preload(plan: Plan) -> dict[str, Any]:
    found = {
        "startup": preload.startup(plan),
        "memory": preload.memory(plan),
        "replacement": preload.replacement(plan),
    }
    return {
        "preload": found,
        "startup_ratio_4_workers": found["startup"]["ratio"],
        "startup_ratio_4_workers_all_started": found["startup"]["all_workers_ratio"],
        "preload_memory_ratio": found["memory"]["ratio"],
        "replacement_s": found["replacement"]["preload"]["median_s"],
        "replacement_s_no_preload": found["replacement"]["no_preload"]["median_s"],
    }


def _memory_recycle(plan: Plan) -> dict[str, Any]:
    found = memrecycle.measure(plan)
    return {
        "memory_recycle": found,
        "memory_recycle_failed_requests": found["max_worker_memory"]["failed_requests"],
        "memory_recycle_throughput_ratio": found["throughput_ratio"],
        "memory_recycles": found["max_worker_memory"]["recycles"],
    }


def _websockets(plan: Plan) -> dict[str, Any]:
    ws = wsload.measure(plan)
    return {"websocket": ws, "ws_connections_held": ws["held"], "ws_echo_p99_ms": round(ws["echo_p99_ms"], 2)}


def _recycle(plan: Plan) -> dict[str, Any]:
    found = recycle.measure(plan)
    return {"recycle": found, "recycle_failed_requests": found["preset"]["failed_requests"]}


def _hostile(plan: Plan) -> dict[str, Any]:
    found = hostile.measure(plan)
    return {
        "hostile": found,
        "hostile_throughput_ratio": found["throughput_ratio"],
        "hostile_rss_growth_mb": found["rss_growth_mb"],
        "slowloris_closed_fraction": found["slowloris"]["closed_fraction"],
    }


STEPS: tuple[tuple[str, Callable[[Plan], dict[str, Any]]], ...] = (
    ("image sizes", _sizes),
    ("startup", _startup),
    ("throughput", _throughput),
    ("thread counts", _threads),
    ("rss per worker", _rss),
    ("websockets", _websockets),
    ("recycling", _recycle),
    ("preloaded workers", _preload),
    ("recycling by memory", _memory_recycle),
    ("hostile clients", _hostile),
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
    """What shows the harness itself is broken. Speed, failed requests and the targets are reported,
    never asserted: a contender that fails requests or holds connections is a finding, not a breakage."""
    found = []
    positive = (
        "startup_ratio",
        "kit_layers_mb",
        "rss_per_worker_mb",
        "pss_per_worker_mb",
        "ws_echo_p99_ms",
        "startup_ratio_4_workers",
        "preload_memory_ratio",
        "replacement_s",
        "replacement_s_no_preload",
        "memory_recycle_throughput_ratio",
    )
    for key in positive:
        value = results.get(key)
        if not isinstance(value, float | int) or not math.isfinite(value) or value <= 0:
            found.append(f"{key} is not a positive number: {value!r}")
    paths = dict.fromkeys(e["path"] for e in results["throughput"])
    for path in paths:
        if not any(e["rps"] > 0 for e in results["throughput"] if e["path"] == path):
            found.append(f"no server answered {path} with 2xx: is the demo image older than its {path} view?")
    if results["ws_connections_held"] != plan.ws_sockets:
        found.append(f"held {results['ws_connections_held']} of {plan.ws_sockets} WebSockets")
    if results["websocket"]["echoes"] == 0:
        found.append("no WebSocket echo came back")
    if results["memory_recycles"] == 0:
        found.append("max_worker_memory recycled no worker: raise the leak or lower the limit")
    attack = results["hostile"]
    if attack["clean_rps"] <= 0:
        found.append(f"the hostile scenario's clean run served no {attack['path']}")
    if attack["slowloris"]["opened"] == 0:
        found.append("the hostile client opened no slowloris connection")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--smoke", action="store_true", help="every measurement briefly (< 3 min)")
    parser.add_argument(
        "--out",
        type=Path,
        required=True,
        help="where results.json, RESULTS.md, the chart go; with bench/ itself, also the README's headline tables",
    )
    parser.add_argument("--render", action="store_true", help="only rewrite the outputs from DIR/results.json")
    args = parser.parse_args()
    readme = HERE.parent / "README.md" if args.out.resolve() == HERE else None
    if args.render:
        results = json.loads((args.out / "results.json").read_text())
        results["targets"] = report.targets(results)  # against the targets as they are declared now
        report.write(results, args.out, readme)
        return
    plan = SMOKE if args.smoke else FULL
    preflight()
    try:
        results = run(plan)
    finally:
        remove_run_leftovers()
    report.write(results, args.out, readme)
    print(f"bench: wrote {args.out}/results.json, RESULTS.md, throughput.png", flush=True)
    broken = problems(results, plan)
    if broken:
        sys.exit("bench: the harness is broken:\n  " + "\n  ".join(broken))


if __name__ == "__main__":
    main()
