"""A process's memory as the kernel accounts it: unique (USS) and proportional (PSS) set size.

USS is what the process alone holds, what its exit would free: the figure a memory limit on one worker
should watch. PSS shares every page among the processes that map it, so the PSS of all workers adds up to
what they use together; forked from one preloaded process, their USS is far below their RSS.

Read from ``/proc/<pid>/smaps_rollup`` (Linux 4.14), one read of about 20 lines. Standard library only:
the supervisor reads its workers', and each worker its own for the metrics.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Usage:
    uss: int  # bytes
    pss: int  # bytes


def usage(pid: int | str = "self") -> Usage | None:
    """The process's memory, or None if it is gone (or this kernel has no smaps_rollup)."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kib = {}
    for line in text.splitlines()[1:]:  # the first line names the address range
        name, _, value = line.partition(":")
        kib[name] = int(value.split()[0])
    return Usage(uss=(kib["Private_Clean"] + kib["Private_Dirty"]) * 1024, pss=kib["Pss"] * 1024)
