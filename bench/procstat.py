"""Resident memory of a container's processes, read by the engine (`docker top`), so the image needs no ps."""

from __future__ import annotations

from dataclasses import dataclass

from bench.containers import Container, docker

MB = 1e6


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    rss_bytes: int
    args: str


def processes(container: Container) -> list[Proc]:
    lines = docker("top", container.id, "-o", "pid,ppid,rss,args").splitlines()[1:]
    procs = []
    for line in lines:
        pid, ppid, rss_kib, args = line.split(None, 3)
        procs.append(Proc(int(pid), int(ppid), int(rss_kib) * 1024, args))
    return procs


def total_rss_mb(container: Container) -> float:
    return sum(p.rss_bytes for p in processes(container)) / MB


def uvicorn_workers(container: Container) -> list[Proc]:
    """Worker processes under uvicorn's supervisor, which starts each in a fresh interpreter (spawn)."""
    return [p for p in processes(container) if "multiprocessing.spawn" in p.args]
