"""Hostile client, run by the harness on the load core inside the server's network namespace.

Opens `--slowloris` connections that send a request head one header line every `--interval` seconds
and never finish it, and watches each for `--observe` seconds from its connect. It prints `STARTED`
once they are open, then sends `--headers` requests whose last header never ends (`--header-bytes`
each) and one POST declaring `--post-bytes` of body, each streamed as fast as the server takes it
for at most `--seconds`. The last line is a JSON report.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import time
from collections import Counter
from typing import Any

HOST = "127.0.0.1"
CHUNK = 64 * 1024
PATH = "/sync"


def _status(data: bytes) -> int | None:
    """The status code of a response that starts in `data`, if it does."""
    parts = data.split(b" ", 2)
    if len(parts) >= 2 and parts[0].startswith(b"HTTP/") and parts[1].isdigit():
        return int(parts[1])
    return None


async def slowloris(port: int, interval: float, observe: float, opened: list[bool]) -> tuple[float | None, int | None]:
    """Seconds from connect until the server closed the connection (None: still open), and its answer."""
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        opened.append(False)
        raise
    opened.append(True)
    began = time.monotonic()
    status = None
    lines = 0
    try:
        writer.write(f"GET {PATH} HTTP/1.1\r\nHost: localhost\r\n".encode())
        while (left := began + observe - time.monotonic()) > 0:
            try:
                data = await asyncio.wait_for(reader.read(CHUNK), timeout=min(interval, left))
            except TimeoutError:
                lines += 1
                writer.write(f"X-Trickle-{lines}: {lines}\r\n".encode())
                await writer.drain()
                continue
            if not data:
                return time.monotonic() - began, status
            status = status or _status(data)
    except OSError:  # reset by the server
        return time.monotonic() - began, status
    finally:
        writer.close()
    return None, status


async def upload(port: int, head: bytes, filler: bytes, total: int, seconds: float) -> dict[str, Any]:
    """Sends `head`, then `total` bytes of `filler` until the server answers or closes, or time is up."""
    began = time.monotonic()
    deadline = began + seconds
    reader, writer = await asyncio.open_connection(HOST, port)
    answer = asyncio.ensure_future(reader.read(CHUNK))  # b"" once the server closes
    sent = 0
    try:
        writer.write(head)
        while sent < total and not answer.done() and (left := deadline - time.monotonic()) > 0:
            size = min(CHUNK, total - sent)
            writer.write(filler * size)
            await asyncio.wait_for(writer.drain(), timeout=left)
            sent += size
    except (OSError, TimeoutError):
        pass
    done, _ = await asyncio.wait([answer], timeout=max(0.0, deadline - time.monotonic()))
    writer.close()
    if not done:
        answer.cancel()
    # None: the server is still reading; b"": it closed or reset the connection without an answer.
    data = None if not done else b"" if answer.exception() is not None else answer.result()
    return {
        "sent_mb": round(sent / 1e6, 1),
        "status": _status(data) if data else None,
        "closed_by_server": data is not None,
        "seconds": round(time.monotonic() - began, 2),
    }


async def main(args: argparse.Namespace) -> dict[str, Any]:
    opened: list[bool] = []
    loris = [
        asyncio.ensure_future(slowloris(args.port, args.interval, args.observe, opened)) for _ in range(args.slowloris)
    ]
    connecting_until = time.monotonic() + 30
    while len(opened) < args.slowloris and time.monotonic() < connecting_until:
        await asyncio.sleep(0.05)
    print("STARTED", flush=True)
    host = b"Host: localhost\r\n"
    header = b"GET " + PATH.encode() + b" HTTP/1.1\r\n" + host + b"X-Unterminated: "
    body = b"POST " + PATH.encode() + b" HTTP/1.1\r\n" + host + f"Content-Length: {args.post_bytes}\r\n\r\n".encode()
    uploads = [upload(args.port, header, b"a", args.header_bytes, args.seconds) for _ in range(args.headers)]
    *headers, post = await asyncio.gather(*uploads, upload(args.port, body, b"\0", args.post_bytes, args.seconds))
    watched = await asyncio.gather(*loris, return_exceptions=True)
    closed = [w for w in watched if isinstance(w, tuple)]
    return {
        "slowloris": {
            "wanted": args.slowloris,
            "opened": sum(opened),
            "closed_after_s": [None if t is None else round(t, 3) for t, _ in closed],
            "answers": dict(Counter(str(status) for _, status in closed if status is not None)),
        },
        "headers": headers,
        "post": post,
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slowloris", type=int, required=True)
    parser.add_argument("--interval", type=float, required=True)
    parser.add_argument("--observe", type=float, required=True)
    parser.add_argument("--headers", type=int, required=True)
    parser.add_argument("--header-bytes", type=int, required=True)
    parser.add_argument("--post-bytes", type=int, required=True)
    parser.add_argument("--seconds", type=float, required=True)
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(json.dumps(asyncio.run(main(parser.parse_args()))), flush=True)
