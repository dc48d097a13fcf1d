"""How long and how hard each measurement runs: the full run (~22 min, 6 of them the preload measurements, most
of those the 5 rounds of 20 s leaking runs) and the smoke run (< 3 min)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    name: str
    startup_reps: int  # alternating preset/bare pairs a preset
    startup_presets: tuple[str, ...]
    rounds: int  # interleaved throughput rounds; the median of the rounds is reported
    seconds: int  # one wrk run (wrk takes whole seconds)
    warmup_seconds: int  # 0: none
    connections: int
    rss_load_seconds: int
    ws_sockets: int
    ws_batch: int  # sockets opened at once while ramping up
    ws_rate: float  # echo messages a second, across all sockets
    ws_seconds: float
    recycle_max_requests: int  # UVICORN_LIMIT_MAX_REQUESTS
    # UVICORN_LIMIT_MAX_REQUESTS_JITTER, or None for the preset's (up to 1000 more requests a worker)
    recycle_jitter: int | None
    recycle_seconds: int
    recycle_compare: bool  # also recycle with uvicorn's healthcheck timeout at 1 s, and bare uvicorn
    # The clean and the hostile wrk run each, also the bound on the hostile uploads; None: long enough
    # to cover the server's header_timeout and the allowance after it.
    hostile_seconds: int | None
    hostile_slowloris: int  # connections that never finish their request head
    hostile_headers: int  # requests whose last header never ends
    hostile_header_mb: int  # sent on each of them (MB, 10^6 bytes)
    hostile_post_mb: int  # the POST's declared and streamed body
    hostile_rounds: int  # pairs of wrk runs, clean then under attack
    preload_startup_reps: int  # alternating preset/bare pairs, 4 workers, on the wagtail site
    warm_requests: int  # of each Wagtail page before its memory is read, `connections` at once
    replacement_reps: int  # SIGKILLs of the only worker, preload on and off each
    leak_kib: int  # KiB `/leak` keeps a request
    max_worker_memory_mib: int  # DJSERVE_MAX_WORKER_MEMORY of the leaking run
    memory_recycle_seconds: int  # each of the two leaking runs, a round
    memory_recycle_rounds: int  # rounds of both, alternating which goes first
    ready_timeout: float = 60.0


FULL = Plan(
    name="full",
    startup_reps=7,
    startup_presets=("production", "proxy", "websocket"),
    rounds=6,  # short rounds: a burst of other work on the machine spoils few of them
    seconds=3,
    warmup_seconds=3,
    connections=32,
    rss_load_seconds=5,
    ws_sockets=2000,
    ws_batch=100,
    ws_rate=200,
    ws_seconds=30,
    recycle_max_requests=1000,
    recycle_jitter=None,
    recycle_seconds=30,
    recycle_compare=True,
    hostile_seconds=None,
    hostile_slowloris=1000,
    hostile_headers=4,
    hostile_header_mb=64,
    hostile_post_mb=500,
    hostile_rounds=3,
    preload_startup_reps=5,
    warm_requests=128,
    replacement_reps=5,
    leak_kib=16,
    max_worker_memory_mib=64,
    # One leaking run's requests/s moves by a third from one container to the next: more, shorter rounds
    # make the median of their ratios steadier (3 rounds of 30 s read 0.85 and 1.13 on the same code).
    memory_recycle_seconds=20,
    memory_recycle_rounds=5,
)

SMOKE = Plan(
    name="smoke",
    startup_reps=1,
    startup_presets=("production",),
    rounds=1,
    seconds=1,
    warmup_seconds=0,
    connections=16,
    rss_load_seconds=1,
    ws_sockets=100,
    ws_batch=50,
    ws_rate=50,
    ws_seconds=3,
    recycle_max_requests=100,
    recycle_jitter=0,  # so that a slow machine still recycles within the smoke run's few seconds
    recycle_seconds=5,
    recycle_compare=False,
    hostile_seconds=2,
    hostile_slowloris=100,
    hostile_headers=4,
    hostile_header_mb=8,
    hostile_post_mb=50,
    hostile_rounds=1,
    preload_startup_reps=1,
    warm_requests=32,
    replacement_reps=1,
    leak_kib=32,  # so that a slow machine still recycles within the smoke run's few seconds
    max_worker_memory_mib=64,
    memory_recycle_seconds=6,
    memory_recycle_rounds=1,
)
