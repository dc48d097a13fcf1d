"""WebSocket load client, run by the harness on the load core inside the server's network namespace.

Opens `--sockets` connections in batches, prints `HELD <n>` once they are open, then sends echo
messages at a fixed total rate for `--seconds`, spread evenly over the sockets, and prints a JSON line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import sys
import time

from websockets.asyncio.client import ClientConnection, connect
from websockets.typing import Origin

# The demo checks Origin against ALLOWED_HOSTS, as browsers always send one.
ORIGIN = Origin("http://localhost")


async def _open(url: str, sockets: int, batch: int, deadline: float) -> tuple[list[ClientConnection], int]:
    held: list[ClientConnection] = []
    failed = 0
    while len(held) + failed < sockets and time.monotonic() < deadline:
        size = min(batch, sockets - len(held) - failed)
        # No client pings: the server's own ping interval is part of what is measured.
        opened = await asyncio.gather(
            *(connect(url, origin=ORIGIN, proxy=None, ping_interval=None, open_timeout=30) for _ in range(size)),
            return_exceptions=True,
        )
        held.extend(c for c in opened if isinstance(c, ClientConnection))
        failed += sum(1 for c in opened if not isinstance(c, ClientConnection))
    return held, failed


async def _echo(ws: ClientConnection, first: float, interval: float, until: float, out: list[float]) -> int:
    """Sends on a fixed schedule (not after the previous echo), so a slow server cannot slow the rate."""
    errors = 0
    due = first
    while due < until:
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        sent = time.perf_counter()
        try:
            await ws.send(f"{sent:.9f}")
            await ws.recv()
        except Exception:  # any failure of a held socket counts, whatever its kind
            errors += 1
        else:
            out.append((time.perf_counter() - sent) * 1000)
        due += interval
    return errors


async def main(url: str, sockets: int, batch: int, rate: float, seconds: float) -> dict[str, float]:
    held, failed = await _open(url, sockets, batch, time.monotonic() + 120)
    print(f"HELD {len(held)}", flush=True)
    sys.stdin.readline()  # the harness has taken its memory reading
    start = time.monotonic()
    interval = len(held) / rate if held else seconds
    latencies: list[float] = []
    errors = await asyncio.gather(
        *(
            _echo(ws, start + i * interval / len(held), interval, start + seconds, latencies)
            for i, ws in enumerate(held)
        )
    )
    still_open = sum(1 for ws in held if ws.state.name == "OPEN")
    await asyncio.gather(*(ws.close() for ws in held), return_exceptions=True)
    p99 = statistics.quantiles(latencies, n=100)[98] if len(latencies) >= 2 else float("nan")
    return {
        "held": len(held),
        "connect_failed": failed,
        "open_after_echo": still_open,
        "echo_errors": sum(errors),
        "echoes": len(latencies),
        "echo_p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "echo_p99_ms": p99,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--sockets", type=int, required=True)
    parser.add_argument("--batch", type=int, required=True)
    parser.add_argument("--rate", type=float, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    args = parser.parse_args()
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    result = asyncio.run(main(args.url, args.sockets, args.batch, args.rate, args.seconds))
    print(json.dumps(result), flush=True)
