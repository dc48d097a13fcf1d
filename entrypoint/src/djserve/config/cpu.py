"""The container's CPU limit, which is what ``workers = "auto"`` means.

``os.cpu_count()`` reports the host's cores: a pod limited to one CPU on a 64-core node would start
64 workers. The CFS quota (cgroup v2 ``cpu.max``, v1 ``cpu.cfs_quota_us``) is the real limit.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")


def _quota(root: Path) -> float | None:
    try:
        quota, _, period = (root / "cpu.max").read_text().partition(" ")
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        try:
            quota_us = int((v1 / "cpu.cfs_quota_us").read_text())
            period_us = int((v1 / "cpu.cfs_period_us").read_text())
        except (OSError, ValueError):
            continue
        return None if quota_us <= 0 else quota_us / period_us
    return None


def limit(root: Path = CGROUP) -> int:
    """CPUs this process may use: the quota rounded up, else the CPUs it is pinned to; at least 1."""
    quota = _quota(root)
    available = len(os.sched_getaffinity(0))
    if quota is None:
        return max(1, available)
    return max(1, min(math.ceil(quota), available))
