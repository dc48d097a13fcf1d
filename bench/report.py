"""The outputs of a run: results.json, RESULTS.md (with the hand-written findings.md) and the chart."""

from __future__ import annotations

import datetime
import json
import operator
import os
import platform
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot loads: no display here
import matplotlib.pyplot as plt

FINDINGS = Path(__file__).with_name("findings.md")
# The targets: (results key, comparison, bound).
TARGETS: tuple[tuple[str, str, float], ...] = (
    ("preset_vs_best_uvicorn", ">=", 0.98),
    ("startup_ratio", "<=", 1.05),
    ("wsgi_vs_gunicorn_gthread", ">=", 1.0),
    ("kit_layers_mb", "<=", 35),
    ("recycle_failed_requests", "==", 0),
)
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
}


def machine() -> dict[str, Any]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    docker = subprocess.run(
        ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "docker_engine": docker,
        "kernel": platform.release(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
    }


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"key": key, "target": f"{op} {bound:g}", "value": results[key], "met": COMPARE[op](results[key], bound)}
        for key, op, bound in TARGETS
    ]


def write(results: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results["throughput"], out / "throughput.png", results["machine"])
    (out / "RESULTS.md").write_text(markdown(results))


def chart(entries: list[dict[str, Any]], path: Path, host: dict[str, Any]) -> None:
    servers = list(dict.fromkeys(e["server"] for e in entries))
    paths = list(dict.fromkeys(e["path"] for e in entries))
    rps = {(e["server"], e["path"]): e for e in entries}
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    height = 0.8 / len(paths)
    for i, route in enumerate(paths):
        ys = [n + i * height for n in range(len(servers))]
        found = [rps.get((s, route)) for s in servers]
        left.barh(ys, [e["rps"] if e else 0 for e in found], height, label=route)
        right.barh(ys, [e["p99_ms"] if e else 0 for e in found], height, label=route)
        for y, e in zip(ys, found, strict=True):
            if e:
                left.text(e["rps"], y, f" {e['rps']:.0f}", va="center", fontsize=8)
                right.text(e["p99_ms"], y, f" {e['p99_ms']:.1f}", va="center", fontsize=8)
    left.set_yticks([n + height * (len(paths) - 1) / 2 for n in range(len(servers))], servers)
    left.invert_yaxis()
    left.set_xlabel("requests/s (higher is better)")
    right.set_xlabel("p99 latency, ms (lower is better)")
    left.legend(title="demo path")
    fig.suptitle(f"One worker, 1 CPU each, same image; wrk on the other core. {host['cpu_model']}, {host['date']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    ws = r["websocket"]
    parts = [
        "# Benchmark results",
        f"Written by `make bench` ({r['plan']} run). Machine: {m['nproc']} CPUs ({m['cpu_model']}), "
        f"kernel {m['kernel']}, Docker engine {m['docker_engine']}, {m['date']}.\n\n"
        "Every server container gets `--cpus 1 --cpuset-cpus 0` and one worker; the load generator "
        "(wrk, or the Python WebSocket client) runs pinned to CPU 1 inside the container's network "
        "namespace and targets 127.0.0.1:8000. All servers run in one image (`djserve-bench:servers`: "
        "the production demo plus gunicorn, uvicorn-worker and granian), measured interleaved round by "
        "round; figures are medians of the rounds, ratios are medians of per-round ratios. Speed is "
        "quoted as ratios: absolute numbers depend on the machine and what else it runs.",
        "## Targets",
        _table(
            ["result", "target", "value", "met"],
            [[t["key"], t["target"], t["value"], "yes" if t["met"] else "**no**"] for t in r["targets"]],
        ),
        "## Throughput",
        _table(
            ["server", "interface", "path", "requests/s", "p99 ms", "rounds (requests/s)"],
            [
                [e["server"], e["interface"], e["path"], e["rps"], e["p99_ms"], ", ".join(map(str, e["rounds_rps"]))]
                for e in r["throughput"]
            ],
        ),
        "![throughput](throughput.png)",
        "## Time to first 200",
        "From `docker run` to the first 200 on `/async`, each preset's image with its own command "
        "against the same image running a bare `uvicorn` command with the preset's settings.",
        _table(
            ["preset", "djserve s", "bare uvicorn s", "median ratio"],
            [[p, _join(v["preset_s"]), _join(v["bare_uvicorn_s"]), v["ratio"]] for p, v in r["startup"].items()],
        ),
        "## Size and memory",
        _table(
            ["variant", "base image", "base MB", "kit layers MB", "demo layers MB"],
            [
                [v, s["base_image"], s["base_mb"], s["kit_layers_mb"], s["demo_layers_mb"]]
                for v, s in r["image_sizes"].items()
            ],
        ),
        f"RSS per worker (two workers under uvicorn's supervisor, after load): djserve "
        f"{r['rss_per_worker_mb']} MB, bare uvicorn {r['rss_per_worker_mb_bare_uvicorn']} MB.\n\n"
        "Whole-container RSS of each throughput server after its load, MB: "
        + ", ".join(f"{k} {v:.1f}" for k, v in r["container_memory_mb"].items())
        + ".",
        "## WebSockets",
        f"`djserve-demo:websocket`, `/ws/echo/`: {ws['held']} of {ws['sockets_wanted']} sockets held "
        f"({ws['connect_failed']} failed to open, {ws['open_after_echo']} still open after the echo phase); "
        f"{ws['echoes']} echoes at a fixed {r['params']['ws_rate']:g} messages/s: p50 "
        f"{ws['echo_p50_ms']:.1f} ms, p99 {ws['echo_p99_ms']:.1f} ms, {ws['echo_errors']} errors. Memory: "
        f"{ws['rss_before_mb']} MB before, {ws['rss_held_mb']} MB holding them: {ws['kb_per_socket']} kB "
        "per socket (the client offers permessage-deflate, as browsers do).",
        *_recycling(r),
    ]
    if FINDINGS.exists():
        parts.append(FINDINGS.read_text().strip())
    return "\n\n".join(parts) + "\n"


def _recycling(r: dict[str, Any]) -> list[str]:
    recycled = r["recycle"]
    preset = recycled["preset"]
    jitter = "" if r["params"]["recycle_jitter"] is not None else " (the preset adds a jitter of up to 1000)"
    parts = [
        "## Worker recycling",
        f"`{preset['image']}` with {_env(preset['env'])}{jitter}, wrk on `{preset['path']}` with "
        f"{r['params']['connections']} connections for {r['params']['recycle_seconds']:g} s. Failed = socket "
        "errors, timeouts (5 s) and non-2xx/3xx answers.",
        _table(
            ["scenario", "requests", "recycles", "failed", "errors", "p99 ms", "max ms"],
            [
                [name, v["requests"], v["recycles"], v["failed_requests"], _env(v["errors"]), v["p99_ms"], v["max_ms"]]
                for name, v in recycled.items()
            ],
        ),
    ]
    if "bare_uvicorn" in recycled:
        parts.append(
            "`preset` runs the image's own command with the environment above; `healthcheck_1s` adds "
            f"`UVICORN_TIMEOUT_WORKER_HEALTHCHECK=1`; `bare_uvicorn` runs `{recycled['bare_uvicorn']['command']}` "
            "in the same image."
        )
    return parts


def _join(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _env(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())
