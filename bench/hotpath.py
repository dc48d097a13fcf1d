"""CPU time per request of djserve's hot paths: a host micro-benchmark, in-process, no sockets.

Unlike the rest of ``bench/``, which runs servers in containers under wrk (``make bench``), this
script runs on the host, in the worktree's venv::

    .venv/bin/python -m bench.hotpath [--requests 2000] [--rounds 7] [--concurrency 1] \\
        [--serve-static] [--metrics] [--only 'wsgi /sync' ...] [--parts]

It builds the worker app as uvicorn's factory does (``djserve.worker.create``) for the demo project
(``python/demo``, SQLite, no database query on these views) in each interface, and drives it directly
on uvloop with a minimal ``receive`` (one empty request body, then a disconnect that never comes, as
uvicorn's does while the response is pending) and a ``send`` that only checks the status.
``concurrency`` requests are kept in flight at once, as wrk's connections are. Each round runs
``requests`` requests and the figure is the least CPU time of any round (``time.process_time``: every
thread of the process, so the pool's threads count), in µs per request. On a shared machine the
least of several rounds is the figure least disturbed by other work.

``--parts`` times the pieces on the path alone instead: a no-op call in a session of the thread
pool (the hand-off to a thread and back), asgiref's ``ThreadSensitiveContext``, the environ, the
request body's file, the hybrid dispatch, and the metrics middleware (prometheus_client's
multiprocess values) around an app that answers at once.

The floors beside the interfaces are Django alone: its WSGI handler called directly in this thread,
and its ASGI handler with no djserve layer. What an interface costs above its floor is djserve's.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import uvloop
from djserve.app.types import ASGIApp as ASGI
from djserve.app.types import Message, Receive, Scope, Send

DEMO = Path(__file__).resolve().parent.parent / "python"


def scope(path: str) -> Scope:
    """What uvicorn's httptools protocol passes for wrk's ``GET path HTTP/1.1`` with its one header."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000")],
        "state": {},
    }


async def request(app: ASGI, path: str) -> None:
    first = True
    never: asyncio.Future[Message] = asyncio.get_running_loop().create_future()

    async def receive() -> Message:
        nonlocal first
        if first:
            first = False
            return {"type": "http.request", "body": b"", "more_body": False}
        return await never  # cancelled by the app once it has answered

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] != 200:
            raise RuntimeError(f"{path}: status {message['status']}")

    await app(scope(path), receive, send)


async def rounds(app: ASGI, path: str, *, requests: int, rounds: int, concurrency: int) -> float:
    """The least CPU time per request, in µs, of ``rounds`` runs of ``requests`` requests."""

    async def connection(count: int) -> None:
        for _ in range(count):
            await request(app, path)

    await connection(50)  # warm caches: URL resolution, lazy imports, the pool's threads
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        await asyncio.gather(*(connection(requests // concurrency) for _ in range(concurrency)))
        best = min(best, (time.process_time() - start) / (requests // concurrency * concurrency))
    return best * 1e6


def django_wsgi_floor(*, requests: int, rounds: int) -> float:
    """Django's WSGI handler alone, called in this thread with a prebuilt environ."""
    from django.core.wsgi import get_wsgi_application
    from djserve.app.wsgi import build_environ

    handler = get_wsgi_application()
    template = build_environ(scope("/sync"))

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        if not status.startswith("200"):
            raise RuntimeError(status)

    def one() -> None:
        environ = {**template, "wsgi.input": io.BytesIO(b"")}
        body = handler(environ, start_response)
        b"".join(body)
        body.close()

    for _ in range(50):
        one()
    best = float("inf")
    for _ in range(rounds):
        start = time.process_time()
        for _ in range(requests):
            one()
        best = min(best, (time.process_time() - start) / requests)
    return best * 1e6


async def parts(*, rounds: int) -> None:
    """The pieces on every request's path, each timed alone (µs per call, least of ``rounds``)."""
    from asgiref.sync import ThreadSensitiveContext
    from djserve.app.hybrid import is_async, path_info
    from djserve.app.observe import Observed
    from djserve.app.threads import ThreadPool
    from djserve.app.wsgi import build_environ

    async def timed(step: Callable[[], Awaitable[object]], count: int = 20000) -> float:
        best = float("inf")
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(count):
                await step()
            best = min(best, (time.process_time() - start) / count)
        return best * 1e6

    async def answer(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    pool = ThreadPool(8)
    sync = scope("/sync")
    observed = Observed(answer, metrics_path="/metrics", log_access=False)

    async def nothing() -> None:
        pass

    async def handoff() -> None:
        session = pool.session()
        await session.call(session.release)

    async def context() -> None:
        async with ThreadSensitiveContext(executor=pool.session()):
            pass

    async def environ() -> None:
        build_environ(sync)

    async def spooled() -> None:
        with tempfile.SpooledTemporaryFile(max_size=1024 * 1024) as body:
            body.write(b"")
            body.seek(0)

    async def in_memory() -> None:
        io.BytesIO(b"").seek(0)

    async def dispatch() -> None:
        is_async(path_info(sync))

    floor = await timed(nothing)
    for name, step in [
        ("ThreadPool session, no-op call", handoff),
        ("ThreadSensitiveContext", context),
        ("build_environ", environ),
        ("SpooledTemporaryFile, empty", spooled),
        ("io.BytesIO, empty", in_memory),
        ("hybrid dispatch, cached", dispatch),
    ]:
        print(f"{name:<32} {await timed(step) - floor:6.2f} µs")
    bare = await timed(lambda: request(answer, "/sync"))
    print(f"{'metrics middleware':<32} {await timed(lambda: request(observed, '/sync')) - bare:6.2f} µs")


def worker(interface: str, *, serve_static: bool, metrics: bool) -> ASGI:
    """The app uvicorn would serve in a worker: ``djserve.worker.create`` with the kit's hand-off."""
    from djserve.handoff import WorkerConfig
    from djserve.worker import create

    app = "demo.wsgi:application" if interface == "wsgi" else "demo.asgi:application"
    handoff = WorkerConfig(
        app=app,
        interface=interface,
        wsgi_app="demo.wsgi:application" if interface == "hybrid" else None,
        health_path="/healthz",
        ready_path="/readyz",
        max_body_bytes=10 * 1024 * 1024,
        serve_static=serve_static,
        metrics=metrics,
        metrics_path="/metrics",
    )
    return create({**handoff.to_environ(), "DJANGO_SETTINGS_MODULE": "demo.settings"})


def setup_demo() -> None:
    """The demo project's settings, a scratch database and static root, and prometheus_client's directory."""
    sys.path.insert(0, str(DEMO))
    scratch = Path(tempfile.mkdtemp(prefix="hotpath-"))
    (scratch / "static").mkdir()
    (scratch / "static" / "app.css").write_text("body {}\n")
    (scratch / "metrics").mkdir()
    os.environ["DJANGO_SETTINGS_MODULE"] = "demo.settings"
    os.environ["DJANGO_EPHEMERAL_SECRET_KEY"] = "1"
    os.environ["DATABASE_PATH"] = str(scratch / "db.sqlite3")
    os.environ["STATIC_ROOT"] = str(scratch / "static")
    # Read when prometheus_client is first imported, as in a worker under djserve's supervisor.
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(scratch / "metrics")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=2000, help="requests per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--concurrency", type=int, default=1, help="requests in flight at once")
    parser.add_argument("--only", nargs="*", default=[], help="cases to run, e.g. 'wsgi /sync'")
    parser.add_argument("--serve-static", action="store_true", help="serve_static on, as in the production preset")
    parser.add_argument("--metrics", action="store_true", help="metrics on (prometheus_client multiprocess)")
    parser.add_argument("--parts", action="store_true", help="time the pieces of the path alone, then stop")
    args = parser.parse_args()
    setup_demo()
    runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    if args.parts:
        runner.run(parts(rounds=args.rounds))
        return
    cases = [
        ("wsgi", "/sync"),
        ("hybrid", "/sync"),
        ("hybrid", "/async"),
        ("asgi", "/sync"),
        ("asgi", "/async"),
        ("django-asgi", "/sync"),
        ("django-asgi", "/async"),
    ]
    selected = [c for c in cases if not args.only or f"{c[0]} {c[1]}" in args.only]
    if not args.only or "django-wsgi /sync" in args.only:
        print(f"{'django-wsgi /sync':<20} {django_wsgi_floor(requests=args.requests, rounds=args.rounds):7.1f} µs")
    apps: dict[str, ASGI] = {}
    for interface, path in selected:
        if interface not in apps:
            apps[interface] = (
                django_asgi()
                if interface == "django-asgi"
                else worker(interface, serve_static=args.serve_static, metrics=args.metrics)
            )
        cost = runner.run(
            rounds(apps[interface], path, requests=args.requests, rounds=args.rounds, concurrency=args.concurrency)
        )
        print(f"{interface + ' ' + path:<20} {cost:7.1f} µs")
    runner.close()


def django_asgi() -> ASGI:
    """Django's own ASGI handler, as bare uvicorn serves it."""
    from django.core.asgi import get_asgi_application

    app: ASGI = get_asgi_application()
    return app


if __name__ == "__main__":
    main()
