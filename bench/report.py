"""The outputs of a run: results.json, RESULTS.md (with the hand-written findings.md), the chart, and
for the committed run the README's headline tables, so that no figure is copied by hand.
"""

from __future__ import annotations

import datetime
import json
import operator
import os
import platform
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot loads: no display here
import matplotlib.pyplot as plt

from bench.postgres import MAX_CONNECTIONS
from bench.servers import DB_PATH
from bench.throughput import SETTLE_SECONDS

FINDINGS = Path(__file__).with_name("findings.md")
# The README's generated part lies between these lines.
BEGIN = "<!-- bench:headlines begin (written by `make bench` from bench/results.json) -->"
END = "<!-- bench:headlines end -->"


@dataclass(frozen=True)
class Target:
    """An issue's target: results key (`a.b` reads a nested value), comparison, bound, and what it means.

    A bound given as a string is another results key, such as the thread count."""

    key: str
    op: str
    bound: float | str
    label: str


TARGETS = (
    Target("asgi_db_vs_uvicorn", ">=", 3.5, "djserve ASGI / bare uvicorn with `CONN_MAX_AGE=0`, `/db` requests/s"),
    Target("failed_requests.djserve-asgi", "==", 0, "failed requests, djserve ASGI, all paths"),
    Target("pg_connections.djserve-asgi", "<=", "threads", "PostgreSQL connections held after load, djserve ASGI"),
    Target("pg_connections.djserve-wsgi", "<=", "threads", "PostgreSQL connections held after load, djserve WSGI"),
    Target(
        "pg_connections.djserve-hybrid", "<=", "threads", "PostgreSQL connections held after load, production preset"
    ),
    Target("asgi_sync_vs_uvicorn", ">=", 1.25, "djserve ASGI / bare uvicorn, `/sync` requests/s"),
    Target("asgi_async_vs_uvicorn", ">=", 1.25, "djserve ASGI / bare uvicorn, `/async` requests/s"),
    Target("wsgi_vs_gunicorn_gthread", ">=", 1.5, "djserve WSGI / gunicorn gthread, `/sync` requests/s"),
    Target("wsgi_db_vs_gunicorn_gthread", ">=", 1.1, "djserve WSGI / gunicorn gthread, `/db` requests/s"),
    Target("hybrid_vs_asgi_sync", ">=", 3, "production preset (hybrid) / ASGI mode, `/sync` requests/s"),
    Target("hybrid_vs_wsgi_sync", ">=", 0.9, "production preset (hybrid) / WSGI mode, `/sync` requests/s"),
    Target("hybrid_vs_asgi_async", ">=", 0.95, "production preset (hybrid) / ASGI mode, `/async` requests/s"),
    Target("hostile_throughput_ratio", ">=", 0.9, "`/sync` requests/s under hostile clients / without them"),
    Target("hostile_rss_growth_mb", "<", 32, "memory growth under hostile clients, MB"),
    Target("slowloris_closed_fraction", "==", 1, "slowloris connections closed within `header_timeout` + 2 s"),
    Target("startup_ratio", "<=", 1.0, "time to first 200, preset / bare uvicorn (slowest preset)"),
    Target("kit_layers_mb", "<=", 35, "kit layers on top of the Python base image, MB"),
    Target("recycle_failed_requests", "==", 0, "failed requests while 2 workers recycle under load"),
    Target(
        "startup_ratio_4_workers", "<=", 0.8, "time to first 200, production preset / bare uvicorn, 4 workers, Wagtail"
    ),
    Target("preload_memory_ratio", "<=", 0.6, "container memory, 4 workers, preload / no preload, Wagtail"),
    Target("replacement_s", "<=", 0.2, "SIGKILL of the only worker to its replacement's first 200, s, Wagtail"),
    Target("memory_recycle_failed_requests", "==", 0, "failed requests while max_worker_memory recycles 2 workers"),
    Target("memory_recycle_throughput_ratio", ">=", 0.9, "`/leak` requests/s, with max_worker_memory / without it"),
)
COMPARE: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
}
SYMBOL = {">=": "≥", "<=": "≤", "<": "<", "==": "="}


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


def _lookup(results: dict[str, Any], key: str) -> Any:
    value: Any = results
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target with its value; a value that was not measured (None) does not meet its target."""
    found = []
    for t in TARGETS:
        value = _lookup(results, t.key)
        bound = _lookup(results, t.bound) if isinstance(t.bound, str) else t.bound
        text = f"{SYMBOL[t.op]} {_shown(bound)}" + (f" ({t.bound})" if isinstance(t.bound, str) else "")
        met = value is not None and bound is not None and COMPARE[t.op](value, bound)
        found.append({"key": t.key, "label": t.label, "target": text, "value": value, "met": met})
    return found


def write(results: dict[str, Any], out: Path, readme: Path | None = None) -> None:
    """Writes the outputs into `out`; `readme`, if given, gets its headline tables replaced."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    chart(results, out / "throughput.png")
    (out / "RESULTS.md").write_text(markdown(results))
    if readme is not None:
        head, rest = readme.read_text().split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        readme.write_text(f"{head}{BEGIN}\n{headlines(results)}\n{END}{tail}")


def _shown(value: Any) -> str:
    if value is None:
        return "not measured"
    return f"{value:g}" if isinstance(value, float | int) else str(value)


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _targets_table(r: dict[str, Any]) -> str:
    return _table(
        ["headline", "measured", "target", "met"],
        [[t["label"], _shown(t["value"]), t["target"], "yes" if t["met"] else "**no**"] for t in r["targets"]],
    )


def _db_table(r: dict[str, Any]) -> str:
    return _table(
        ["server", "interface", "`/db` requests/s", "p99 ms", "failed requests", "PostgreSQL connections after"],
        [
            [e["server"], e["interface"], e["rps"], e["p99_ms"], e["failed"], e["pg_connections"]]
            for e in r["throughput"]
            if e["path"] == DB_PATH
        ],
    )


def headlines(r: dict[str, Any]) -> str:
    """The README's tables: every target, and `/db` on PostgreSQL for every contender."""
    m = r["machine"]
    return "\n\n".join(
        [
            f"From the {r['plan']} run of {m['date']} ({m['nproc']} CPUs, {m['cpu_model']}).",
            _targets_table(r),
            _db_table(r),
        ]
    )


def chart(results: dict[str, Any], path: Path) -> None:
    entries = results["throughput"]
    host = results["machine"]
    servers = list(results["servers"])  # the contenders in their order, each mode beside its rivals
    paths = list(dict.fromkeys(e["path"] for e in entries))
    rps = {(e["server"], e["path"]): e for e in entries}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 1.2 + 0.3 * len(servers) * len(paths)), sharey=True)
    height = 0.8 / len(paths)
    for i, route in enumerate(paths):
        ys = [n + i * height for n in range(len(servers))]
        found = [rps.get((s, route)) for s in servers]
        left.barh(ys, [e["rps"] if e else 0 for e in found], height, label=route)
        right.barh(ys, [e["p99_ms"] if e else 0 for e in found], height, label=route)
        for y, e in zip(ys, found, strict=True):
            if e:
                left.text(e["rps"], y, f" {e['rps']:.0f}{_annotation(e)}", va="center", fontsize=7)
                right.text(e["p99_ms"], y, f" {e['p99_ms']:.1f}", va="center", fontsize=7)
    left.set_yticks([n + height * (len(paths) - 1) / 2 for n in range(len(servers))], servers)
    left.invert_yaxis()
    left.set_xlabel("requests/s answered 2xx or 3xx (higher is better)")
    right.set_xlabel("p99 latency, ms (lower is better)")
    left.legend(title="demo path")
    fig.suptitle(
        f"One worker, 1 CPU each; wrk and PostgreSQL on the other core. {host['cpu_model']}, {host['date']}\n"
        "/db labels: PostgreSQL connections held after the runs, and failed requests if any"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _annotation(entry: dict[str, Any]) -> str:
    parts = [f"{entry['pg_connections']} conn"] if "pg_connections" in entry else []
    parts += [f"{entry['failed']} failed"] if entry["failed"] else []
    return f" ({', '.join(parts)})" if parts else ""


def markdown(r: dict[str, Any]) -> str:
    m = r["machine"]
    ws = r["websocket"]
    parts = [
        "# Benchmark results",
        f"Written by `make bench` ({r['plan']} run). Machine: {m['nproc']} CPUs ({m['cpu_model']}), "
        f"kernel {m['kernel']}, Docker engine {m['docker_engine']}, {m['date']}.\n\n"
        "Every server container gets `--cpus 1 --cpuset-cpus 0` and one worker; the load generator "
        "(wrk, or the Python WebSocket and hostile clients) runs pinned to CPU 1 inside the container's "
        "network namespace and targets 127.0.0.1:8000. PostgreSQL runs in its own container pinned to "
        "CPU 1 too (`--cpuset-cpus 1`, no quota), beside wrk, so that the server under test has CPU 0 to "
        "itself; each server gets its own copy of the migrated database, and the servers reach it over "
        "Docker's default bridge. All servers but the websocket preset run in one image "
        "(`djserve-bench:servers`: the production demo plus gunicorn, uvicorn-worker and granian), "
        "measured interleaved round by round; figures are medians of the rounds, ratios are medians of "
        "per-round ratios. Requests/s count answers with 2xx or 3xx only. Speed is quoted as ratios: "
        "absolute numbers depend on the machine and what else it runs.",
        "## Targets",
        _targets_table(r),
        *_throughput(r),
        "## Time to first 200",
        "From `docker run` to the first 200 on `/async`, each preset's image with its own command "
        "against the same image running the bare `uvicorn` command that `djserve command` prints for it "
        "(ASGI mode, Django's application instead of djserve's factory).",
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
        *_worker_memory(r),
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
        *_preload(r),
        *_memory_recycling(r),
        *_hostile(r),
    ]
    if FINDINGS.exists():
        parts.append(FINDINGS.read_text().strip())
    return "\n\n".join(parts) + "\n"


def _throughput(r: dict[str, Any]) -> list[str]:
    hybrid = r["hybrid"]
    ratios = list(dict.fromkeys(k for v in hybrid.values() for k in v))
    return [
        "## Throughput",
        _table(
            ["server", "interface", "path", "requests/s", "p99 ms", "failed", "rounds (requests/s)"],
            [
                [
                    e["server"],
                    e["interface"],
                    e["path"],
                    e["rps"],
                    e["p99_ms"],
                    e["failed"],
                    ", ".join(map(str, e["rounds_rps"])),
                ]
                for e in r["throughput"]
            ],
        ),
        "![throughput](throughput.png)",
        "## `/db` on PostgreSQL",
        f"The demo's `/db` view runs one query. Failed = socket errors, timeouts (5 s) and answers other "
        f"than 2xx/3xx. Connections = `pg_stat_activity` rows for the server's database "
        f"{SETTLE_SECONDS:g} s after its last run; djserve's `threads` is {r['threads']} (from `djserve config`), "
        "one worker each. ASGI servers other than djserve run with Django's advice for ASGI, "
        "`CONN_MAX_AGE=0`; the others with the demo's default (60 s). PostgreSQL allows "
        f"{MAX_CONNECTIONS} connections, so that a server that leaks them shows its count rather than "
        "failing the others' requests.",
        _db_table(r),
        "## The hybrid presets against djserve's ASGI and WSGI modes",
        "Ratios of requests/s, medians of per-round ratios; the interface column of the throughput "
        "table says which interface `djserve config` reports in force for each preset.",
        _table(["preset", *ratios], [[name, *(_shown(v.get(k)) for k in ratios)] for name, v in hybrid.items()]),
        "## What each server runs",
        "Commands that claim the preset's settings are derived from `djserve command` in the image; "
        "thread counts from `djserve config`. Every server also gets its own `DATABASE_URL`.",
        _table(
            ["server", "image", "interface", "command", "environment"],
            [
                [
                    name,
                    f"`{s['image']}`",
                    s["interface"],
                    f"`{s['command']}`" if s["command"] else "the image's own",
                    _env({k: v for k, v in s["env"].items() if k != "DATABASE_URL"}) or "none",
                ]
                for name, s in r["servers"].items()
            ],
        ),
    ]


def _hostile(r: dict[str, Any]) -> list[str]:
    h = r["hostile"]
    loris = h["slowloris"]
    p = r["params"]
    uploads = [*(("unterminated header", u) for u in h["headers"]), ("POST", h["post"])]
    return [
        "## Hostile clients",
        f"`{h['image']}`, wrk on `{h['path']}` with {p['connections']} connections for {h['seconds']} s, "
        f"first alone, then while one client on the load core opens {loris['wanted']} slowloris "
        f"connections (a header line a second, never the end of the head), sends {p['hostile_headers']} "
        f"requests whose last header never ends ({p['hostile_header_mb']} MB each) and a POST declaring "
        f"{p['hostile_post_mb']} MB, each streamed as fast as the server takes it for at most {h['seconds']} s. "
        "Memory = the container's anonymous memory plus its tmpfs (`/tmp`, where a spooled body lands), "
        "sampled from its cgroup every 0.1 s; growth is the peak over the value before the attack. "
        f"{h['rounds']} rounds of both runs: requests/s are medians, the ratio the median of each round's, "
        "memory and uploads from the round that held the most, slowloris from the one that closed the fewest.",
        _table(
            ["", "value"],
            [
                ["`/sync` requests/s, clean / hostile", f"{h['clean_rps']} / {h['hostile_rps']}"],
                ["failed requests, clean / hostile", f"{h['clean_failed']} / {h['hostile_failed']}"],
                ["throughput ratio", _shown(h["throughput_ratio"])],
                ["memory before, MB", h["memory_before_mb"]],
                [
                    "growth: total / anonymous / tmpfs, MB",
                    f"{h['rss_growth_mb']} / {h['anon_growth_mb']} / {h['tmpfs_growth_mb']}",
                ],
                ["memory after the attack, MB", h["memory_after_mb"]],
                ["`header_timeout` (from `djserve config`), s", _shown(h["header_timeout_s"])],
                ["slowloris opened", f"{loris['opened']} of {loris['wanted']}"],
                [
                    "closed within `header_timeout` + 2 s / later / still open",
                    f"{loris['closed_within_bound']} / {loris['closed_later']} / {loris['still_open']}",
                ],
                ["slowest close, s", loris["closed_after_s_max"] or "none closed"],
                ["answers on slowloris connections", _env(loris["answers"]) or "none"],
            ],
        ),
        _table(
            ["upload", "sent MB", "status", "closed by the server", "seconds"],
            [
                [kind, u["sent_mb"], u["status"] or "none", "yes" if u["closed_by_server"] else "no", u["seconds"]]
                for kind, u in uploads
            ],
        ),
    ]


def _recycling(r: dict[str, Any]) -> list[str]:
    recycled = r["recycle"]
    preset = recycled["preset"]
    jitter = "" if r["params"]["recycle_jitter"] is not None else " (and the preset's `limit-max-requests-jitter`)"
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


def _worker_memory(r: dict[str, Any]) -> list[str]:
    if "worker_memory" not in r:  # a run from before PSS was read
        return [
            f"RSS per worker (two workers, after load): djserve {r['rss_per_worker_mb']} MB, bare uvicorn "
            f"{r['rss_per_worker_mb_bare_uvicorn']} MB."
        ]
    names = {"djserve": "production preset (preload)", "djserve_no_preload": "preload off", "uvicorn": "bare uvicorn"}
    return [
        "Per worker, `djserve-demo:production` with two workers, after `/async` and `/sync` load: RSS counts "
        "every page a worker maps, PSS (`/proc/<pid>/smaps_rollup`) divides each shared page among the "
        "processes that map it.",
        _table(
            ["server", "RSS per worker MB", "PSS per worker MB"],
            [[names.get(k, k), v["rss_mb"], v["pss_mb"]] for k, v in r["worker_memory"].items()],
        ),
    ]


def _preload(r: dict[str, Any]) -> list[str]:
    if "preload" not in r:
        return []
    p = r["preload"]
    start, mem, repl = p["startup"], p["memory"], p["replacement"]
    return [
        "## Preloaded workers, on a Wagtail site",
        f"A `wagtail start` project on SQLite in `{start['image']}` (bench/wagtailsite.py), the production "
        "preset (`preload` on) with `UVICORN_WORKERS=4` against the bare uvicorn command `djserve command` "
        f"prints for it (`{start['bare_command']}`). Time to first 200 on `/`, and to the fourth worker's "
        "`Started server process` line (log read every 0.05 s).",
        _table(
            ["", "djserve s", "bare uvicorn s", "median ratio"],
            [
                ["first 200", _join(start["preset_s"]), _join(start["bare_uvicorn_s"]), start["ratio"]],
                [
                    "all 4 workers started",
                    _join(start["preset_all_workers_s"]),
                    _join(start["bare_uvicorn_all_workers_s"]),
                    start["all_workers_ratio"],
                ],
            ],
        ),
        "Memory with 4 workers, preload on and off (`DJSERVE_PRELOAD=false`), after each of "
        f"{', '.join(f'`{page}`' for page in mem['pages'])} answered {r['params']['warm_requests']} requests, "
        f"{r['params']['connections']} at once, each on a new connection. Container = anonymous memory plus "
        "tmpfs from its cgroup's `memory.stat` (the preloaded process included); per worker = mean over the 4 workers.",
        _table(
            ["", "container MB", "RSS per worker MB", "PSS per worker MB"],
            [
                [name, mem[name]["container_mb"], mem[name]["rss_per_worker_mb"], mem[name]["pss_per_worker_mb"]]
                for name in ("preload", "no_preload")
            ],
        ),
        f"Container memory ratio, preload / no preload: {mem['ratio']}.",
        "Replacement: one worker, SIGKILL from the host, then `GET /` every millisecond until a 200 (each "
        "kill at least 5.5 s after the worker started, past the supervisor's young-death window).",
        _table(
            ["", "seconds", "median s"],
            [[name, _join(repl[name]["s"]), repl[name]["median_s"]] for name in ("preload", "no_preload")],
        ),
    ]


def _memory_recycling(r: dict[str, Any]) -> list[str]:
    if "memory_recycle" not in r:
        return []
    m = r["memory_recycle"]
    limited = m["max_worker_memory"]
    return [
        "## Recycling by memory",
        f"`{limited['image']}` with {_env(limited['env'])}: two workers of the production preset, wrk on "
        f"`{limited['path']}` (the demo plus a view that keeps that many KiB a request) with "
        f"{r['params']['connections']} connections for {r['params']['memory_recycle_seconds']} s, against the "
        f"same run without `DJSERVE_MAX_WORKER_MEMORY`, in {r['params']['memory_recycle_rounds']} round(s) "
        "alternating which goes first: requests/s and p99 are medians of the rounds, the ratio the median of "
        "per-round ratios; recycles, failed and errors are totals. Recycles = the supervisor's "
        "`Recycling child process [...] (max_memory)` lines; memory after = the container's anonymous memory "
        "plus tmpfs, the highest of the rounds.",
        _table(
            [
                "run",
                "requests/s",
                "rounds (requests/s)",
                "recycles",
                "failed",
                "errors",
                "p99 ms",
                "max ms",
                "memory after MB",
            ],
            [
                [
                    name,
                    v["rps"],
                    ", ".join(map(str, v["rounds_rps"])),
                    v["recycles"],
                    v["failed_requests"],
                    _env(v["errors"]),
                    v["p99_ms"],
                    v["max_ms"],
                    v["container_mb_after"],
                ]
                for name, v in m.items()
                if isinstance(v, dict)
            ],
        ),
        f"Throughput ratio, with the limit / without: {_shown(m['throughput_ratio'])}.",
    ]


def _join(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


def _env(values: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in values.items())
