"""Prometheus metrics and the access log: every request measured once, in front of the user's app.

prometheus_client's multiprocess mode sums what all workers record: each worker writes its values to
files in ``PROMETHEUS_MULTIPROC_DIR`` and any worker answers ``metrics_path`` with the sum of all of
them. The serving process owns that directory (``djserve.serve.metrics_dir``); the workers fold the files
of workers that are gone into one set (``fold_dead_workers``, layout in ``djserve.metrics_files``).

Beside the requests: why workers were replaced (counted by each replacement as it starts, from the
reason its supervisor gave it), each worker's memory (refreshed at most every few seconds, by the
worker itself, as it serves), and the pool threads' use: those busy, and how long a request waited
for one, which says whether ``threads`` is too small.

Every request's measures are tallied in plain Python and written to prometheus_client's files once a
second (``Tallies``), before this worker answers a scrape, and as it stops: each write takes a lock and
writes a file, which at one write a measure cost 15 % of /sync throughput (``bench/findings.md``).
A worker killed with SIGKILL loses at most its last second of counts.

prometheus_client picks its value store when it is first imported, from ``PROMETHEUS_MULTIPROC_DIR``; it
is therefore imported only inside functions, never by this module's import, so that a single worker that
runs in the supervisor's own process sees the directory too.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import math
import os
import struct
import time
from bisect import bisect_left
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from djserve import memory
from djserve.app import state
from djserve.app.probes import probe_path
from djserve.app.types import ASGIApp, Message, Receive, Scope, Send
from djserve.defaults import METRICS_DIRECTORY_VARIABLE as DIRECTORY
from djserve.metrics_files import DEAD, MERGED, locked

if TYPE_CHECKING:
    from prometheus_client import Counter, Gauge, Histogram

# A method label for anything else keeps the series count bounded whatever clients send.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"})

access_log = logging.getLogger("djserve.access")
logger = logging.getLogger("djserve")


# Why the worker a new one replaces ended (djserve.serve.supervisor): on its own (exit code), by a signal
# it did not ask for, stuck, or recycled at a limit.
RESTART_REASONS = ("exited", "killed", "stuck", "max_requests", "max_memory", "max_lifetime")
SCRAPE_TRIES = 3
MEMORY_EVERY = 5.0  # seconds between two reads of a worker's own memory
WRITE_EVERY = 1.0  # seconds between two writes of a worker's tallies
# prometheus_client's default buckets, spelled out: the tallies count into the same ones.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# A request waits for a thread for microseconds when threads suffice; the upper buckets say they do not.
WAIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(frozen=True)
class Instruments:
    requests: Counter
    duration: Histogram
    in_flight: Gauge
    websockets: Gauge
    worker_starts: Counter
    restarts: Counter
    memory: Gauge
    threads_busy: Gauge
    thread_wait: Histogram


@cache
def instruments() -> Instruments:
    from prometheus_client import Counter, Gauge, Histogram

    found = Instruments(
        requests=Counter("djserve_requests", "HTTP requests answered, probes excluded.", ["method", "status"]),
        duration=Histogram(
            "djserve_request_duration_seconds",
            "Time from request to the end of the response.",
            buckets=DURATION_BUCKETS,
        ),
        in_flight=Gauge("djserve_requests_in_flight", "HTTP requests being answered.", multiprocess_mode="livesum"),
        websockets=Gauge("djserve_websockets_open", "Open WebSocket connections.", multiprocess_mode="livesum"),
        worker_starts=Counter("djserve_worker_starts", "Workers started."),
        restarts=Counter("djserve_worker_restarts", "Workers replaced, by why the one replaced ended.", ["reason"]),
        # liveall: one series per live worker, labelled with its pid by prometheus_client.
        memory=Gauge(
            "djserve_worker_memory_bytes",
            "A worker's memory: uss its own, pss its share.",
            ["kind"],
            multiprocess_mode="liveall",
        ),
        threads_busy=Gauge("djserve_threads_busy", "Pool threads running a request.", multiprocess_mode="livesum"),
        thread_wait=Histogram(
            "djserve_thread_wait_seconds", "Time an HTTP request waited for a pool thread.", buckets=WAIT_BUCKETS
        ),
    )
    for reason in RESTART_REASONS:
        found.restarts.labels(reason=reason)  # every series exists from the start, at 0
    return found


class Buckets:
    """A histogram's observations as prometheus_client 0.26's ``Histogram`` keeps them (metrics.py): a count
    per bucket, in the first whose bound holds the value, and the sum; ``write`` adds what is new to it.

    One thread observes and the event loop's thread writes: it reads a snapshot of the counts, and what a
    thread adds meanwhile is written the next time.
    """

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = (*bounds, math.inf)
        self.counts = [0] * len(self.bounds)
        self.sum = 0.0
        self._written = list(self.counts)
        self._written_sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    def write(self, histogram: Histogram) -> None:
        counts, total = list(self.counts), self.sum
        for bucket, now, before in zip(histogram._buckets, counts, self._written, strict=True):
            if now != before:
                bucket.inc(now - before)
        if total != self._written_sum:
            histogram._sum.inc(total - self._written_sum)
        self._written, self._written_sum = counts, total


class ThreadTally:
    """One pool thread's use (``djserve.app.threads.ThreadMetrics``), tallied by that thread alone."""

    def __init__(self) -> None:
        self.wait = Buckets(WAIT_BUCKETS)
        self.busy = False

    def started(self, queued_at: float) -> None:
        self.wait.observe(time.perf_counter() - queued_at)
        self.busy = True

    def finished(self) -> None:
        self.busy = False


class Tallies:
    """This worker's measures since they were last written, and the write, once a ``WRITE_EVERY``; its pool's
    ``djserve.app.threads.PoolMetrics``."""

    def __init__(self, found: Instruments) -> None:
        self.found = found
        self.requests: dict[tuple[str, str], int] = {}  # (method, status): requests since the last write
        self.duration = Buckets(DURATION_BUCKETS)
        self.in_flight = 0
        self.threads: list[ThreadTally] = []
        self._writing = False

    def thread(self) -> ThreadTally:
        """A pool thread's own tally (the pool asks once a thread, as the thread starts)."""
        tally = ThreadTally()
        self.threads.append(tally)
        return tally

    def write_every_second(self) -> None:
        """Writes from now on, on the running loop, until the worker stops (``state.at_stop``)."""
        if not self._writing:
            self._writing = True
            asyncio.get_running_loop().call_later(WRITE_EVERY, self._tick)
            state.at_stop.append(self.write)

    def _tick(self) -> None:
        self.write()
        asyncio.get_running_loop().call_later(WRITE_EVERY, self._tick)

    def write(self) -> None:
        found = self.found
        for (method, status), count in self.requests.items():
            found.requests.labels(method=method, status=status).inc(count)
        self.requests.clear()
        self.duration.write(found.duration)
        found.in_flight.set(self.in_flight)
        found.threads_busy.set(sum(tally.busy for tally in self.threads))
        for tally in self.threads:
            tally.wait.write(found.thread_wait)


@cache
def tallies() -> Tallies:
    return Tallies(instruments())


def fold_dead_workers(directory: str) -> None:
    """The files of workers that are gone, folded into one set per kind: each count kept, once.

    prometheus_client 0.26's ``MmapedDict`` reads and writes the files (``read_all_values_from_file`` is
    the reader its collector uses); the values of a key add up, or keep their extreme or latest, by kind.
    """
    from prometheus_client.mmap_dict import MmapedDict

    root = Path(directory)
    if not any(root.glob(f"*_{DEAD}*.db")):
        return
    with locked(root, fcntl.LOCK_EX):
        dead: dict[str, list[Path]] = {}
        for path in root.glob(f"*_{DEAD}*.db"):  # again: another worker may have folded them meanwhile
            dead.setdefault(path.name.rpartition("_")[0], []).append(path)
        for kind, paths in dead.items():
            merged = root / f"{kind}_{MERGED}.db"
            values: dict[str, tuple[float, float]] = {}
            for path in [merged, *paths] if merged.exists() else paths:
                try:
                    found = list(MmapedDict.read_all_values_from_file(str(path)))  # type: ignore[no-untyped-call]
                except (OSError, RuntimeError, struct.error) as error:
                    # A worker killed as it created the file leaves it empty or torn: its values are lost
                    # either way, and a file that cannot be read must not fail every scrape after it.
                    logger.warning("metrics: %s cannot be read (%s); its values are dropped", path.name, error)
                    found = []
                for key, value, timestamp, _ in found:
                    values[key] = _folded(kind, values.get(key), (value, timestamp))
            # Written aside, then renamed over the set: no scrape runs meanwhile, and a worker killed
            # halfway leaves the old set and the dead files, which the next fold takes again.
            written = root / f"{kind}_{MERGED}.new"
            written.unlink(missing_ok=True)
            out = MmapedDict(str(written))  # type: ignore[no-untyped-call]
            for key, (value, timestamp) in values.items():
                out.write_value(key, value, timestamp)  # type: ignore[no-untyped-call]
            out.close()  # type: ignore[no-untyped-call]
            written.replace(merged)
            for path in paths:
                path.unlink()


def _folded(kind: str, old: tuple[float, float] | None, new: tuple[float, float]) -> tuple[float, float]:
    if old is None:
        return new
    if kind == "gauge_max":
        return max(old, new)
    if kind == "gauge_min":
        return min(old, new)
    if kind == "gauge_mostrecent":
        return max(old, new, key=lambda pair: pair[1])
    return old[0] + new[0], max(old[1], new[1])


def exposition() -> tuple[bytes, str]:
    """The sum over every worker's files (or this process's values without the supervisor's directory)."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest, multiprocess

    directory = os.environ.get(DIRECTORY)
    if not directory:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    fold_dead_workers(directory)
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    for _ in range(SCRAPE_TRIES - 1):
        try:
            with locked(directory, fcntl.LOCK_SH):
                return generate_latest(registry), CONTENT_TYPE_LATEST
        except struct.error:
            # prometheus_client 0.26 creates a value file empty, then sizes it: a worker starting now
            # shows an empty file for a few microseconds, which its reader cannot parse.
            time.sleep(0.01)
    with locked(directory, fcntl.LOCK_SH):
        return generate_latest(registry), CONTENT_TYPE_LATEST


class Observed:
    """Measures every request below the probes, answers ``metrics_path``, and writes the access log line.

    ``metrics_path`` None: no metrics (the path goes to Django). ``log_access``: one ``djserve.access``
    record per HTTP request, with its duration, in place of uvicorn's.
    """

    def __init__(self, app: ASGIApp, *, metrics_path: str | None, log_access: bool) -> None:
        self.app = app
        self.metrics_path = metrics_path
        self.log_access = log_access
        self._paths = frozenset({metrics_path} if metrics_path else ())
        self._memory_due = 0.0
        self._tallies = tallies() if metrics_path is not None else None
        if metrics_path is not None:
            found = instruments()
            found.worker_starts.inc()
            if state.restart_reason in RESTART_REASONS:
                found.restarts.labels(reason=state.restart_reason).inc()
            self._refresh_memory()
            if os.environ.get(DIRECTORY):
                fold_dead_workers(os.environ[DIRECTORY])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "websocket" and self.metrics_path is not None:
            websockets = instruments().websockets
            websockets.inc()
            try:
                await self.app(scope, receive, send)
            finally:
                websockets.dec()
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # On the bare path and under root_path, as the probes are (the cheap suffix test comes first).
        path, tally = scope["path"], self._tallies
        if tally is not None:
            if self.metrics_path and path.endswith(self.metrics_path) and probe_path(scope, self._paths) is not None:
                self._memory_due = 0.0
                self._refresh_memory()
                tally.write()
                await self._answer_metrics(send)
                return
            self._refresh_memory()
            tally.write_every_second()
        await self._measured(scope, receive, send)

    def _refresh_memory(self) -> None:
        now = time.monotonic()
        if now < self._memory_due:
            return
        self._memory_due = now + MEMORY_EVERY
        found = memory.usage()
        if found is not None:
            gauge = instruments().memory
            gauge.labels(kind="uss").set(found.uss)
            gauge.labels(kind="pss").set(found.pss)

    async def _measured(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500  # what uvicorn answers for an app that raises or never starts a response

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        tally = self._tallies
        if tally is not None:
            tally.in_flight += 1
        try:
            await self.app(scope, receive, send_status)
        finally:
            seconds = time.perf_counter() - started
            if tally is not None:
                tally.in_flight -= 1
                key = (scope["method"] if scope["method"] in METHODS else "other", str(status))
                tally.requests[key] = tally.requests.get(key, 0) + 1
                tally.duration.observe(seconds)
            if self.log_access:
                _log_access(scope, status, seconds)

    @staticmethod
    async def _answer_metrics(send: Send) -> None:
        body, content_type = exposition()
        headers = [(b"content-type", content_type.encode()), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    client = scope.get("client")
    fields = {
        "method": scope["method"],
        "path": scope["path"],  # without the query string, which may carry tokens
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "client": f"{client[0]}:{client[1]}" if client else None,
    }
    access_log.info("%s %s %d %.1fms", fields["method"], fields["path"], status, fields["duration_ms"], extra=fields)
