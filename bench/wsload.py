"""Hold many WebSockets on the websocket variant: echo p99 at a fixed rate and memory per socket."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.containers import PORT, Spec, running, wait_for_200
from bench.plan import Plan
from bench.procstat import total_rss_mb

IMAGE = "djserve-demo:websocket"
ROOT = Path(__file__).resolve().parent.parent


def _client(prefix: list[str], sockets: int, batch: int, rate: float, seconds: float) -> subprocess.Popen[str]:
    load = (f"--sockets={sockets}", f"--batch={batch}", f"--rate={rate}", f"--seconds={seconds}")
    command = [*prefix, sys.executable, "-m", "bench.wsclient", f"ws://127.0.0.1:{PORT}/ws/echo/", *load]
    return subprocess.Popen(command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)


def _finish(client: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    out, _ = client.communicate("go\n", timeout=timeout)
    lines = out.strip().splitlines()
    if client.returncode != 0 or not lines:
        raise RuntimeError(f"WebSocket client failed ({client.returncode}): {out[-1000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def measure(plan: Plan) -> dict[str, Any]:
    # This measures how many sockets one worker holds, so the per-worker bound must not cut it short.
    spec = Spec(IMAGE, (), {"DJSERVE_WS_MAX_CONNECTIONS": str(plan.ws_sockets + 100)})
    with running(spec) as (container,):
        wait_for_200(container, "/async", plan.ready_timeout)
        prefix = container.load_prefix()
        # A few sockets first, so the baseline includes the consumer code and the first-socket costs.
        _finish(_client(prefix, 10, 10, 10, 1), timeout=120)
        before = total_rss_mb(container)
        client = _client(prefix, plan.ws_sockets, plan.ws_batch, plan.ws_rate, plan.ws_seconds)
        try:
            assert client.stdout is not None
            held_line = client.stdout.readline()  # blocks until every socket is open (bounded in the client)
            if not held_line.startswith("HELD "):
                raise RuntimeError(f"WebSocket client did not report held sockets: {held_line!r}")
            held = int(held_line.split()[1])
            during = total_rss_mb(container)
            result = _finish(client, timeout=plan.ws_seconds + 120)
        finally:
            if client.poll() is None:
                client.kill()
    result["sockets_wanted"] = plan.ws_sockets
    result["rss_before_mb"] = round(before, 1)
    result["rss_held_mb"] = round(during, 1)
    result["kb_per_socket"] = round((during - before) * 1000 / held, 1) if held else None
    return result
