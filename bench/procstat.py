"""Memory of a container: its processes' RSS read by the engine (`docker top`), so the image needs no ps,
their PSS from the host's /proc (the pids `docker top` gives are the host's), and what it holds in memory
read from its cgroup on the host, cheap enough to sample several times a second.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.containers import Container, docker

MB = 1e6


@dataclass(frozen=True)
class Proc:
    pid: int
    ppid: int
    rss_bytes: int
    name: str  # the kernel's comm: djserve names its preloaded process and the workers forked from it
    args: str


def processes(container: Container) -> list[Proc]:
    lines = docker("top", container.id, "-o", "pid,ppid,rss,comm,args").splitlines()[1:]
    procs = []
    for line in lines:
        pid, ppid, rss_kib, name, args = line.split(None, 4)
        procs.append(Proc(int(pid), int(ppid), int(rss_kib) * 1024, name, args))
    return procs


def total_rss_mb(container: Container) -> float:
    return sum(p.rss_bytes for p in processes(container)) / MB


def uvicorn_workers(container: Container) -> list[Proc]:
    """Worker processes: spawned by uvicorn's supervisor (a fresh interpreter each), or forked from
    djserve's preloaded process, which names them."""
    return [p for p in processes(container) if "multiprocessing.spawn" in p.args or p.name == "djserve-worker"]


def pss_bytes(proc: Proc) -> int:
    """Proportional set size: each page shared by n processes counts 1/n, so the workers' PSS adds up to
    what they hold together, where RSS counts a page once per process that maps it."""
    for line in Path(f"/proc/{proc.pid}/smaps_rollup").read_text().splitlines():
        if line.startswith("Pss:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no Pss in /proc/{proc.pid}/smaps_rollup")


def memory_stat(container: Container) -> Path:
    """The container's memory.stat in the host's cgroup tree (cgroup v1 or v2)."""
    pid = docker("inspect", "-f", "{{.State.Pid}}", container.id)
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return Path("/sys/fs/cgroup/memory", path.lstrip("/"), "memory.stat")
        if controllers == "" and Path("/sys/fs/cgroup/cgroup.controllers").exists():
            return Path("/sys/fs/cgroup", path.lstrip("/"), "memory.stat")
    raise RuntimeError(f"no memory cgroup for {container.id[:12]}")


def in_memory_mb(stat: Path) -> tuple[float, float]:
    """(anonymous memory of the container's processes, files in its tmpfs mounts), MB.

    Together what a client can make the container hold: process heaps and a request body spooled to
    the /tmp tmpfs alike. Page cache of the image's files is left out.
    """
    values = dict(line.split() for line in stat.read_text().splitlines())
    v2 = "anon" in values
    anon, shmem = (values["anon"], values["shmem"]) if v2 else (values["total_rss"], values["total_shmem"])
    return int(anon) / MB, int(shmem) / MB
