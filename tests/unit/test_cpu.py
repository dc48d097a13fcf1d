"""`workers = "auto"`: the container's CPU limit, read from cgroup files as the kernel writes them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from djserve.config.cpu import limit

AVAILABLE = len(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"cpu.max": "150000 100000\n"}, min(2, AVAILABLE)),  # cgroup v2, 1.5 CPUs rounds up
        ({"cpu.max": "50000 100000\n"}, 1),  # half a CPU is still one worker
        ({"cpu.max": "max 100000\n"}, AVAILABLE),  # no quota: the CPUs this process may run on
        ({"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1),  # cgroup v1
        ({"cpu,cpuacct/cpu.cfs_quota_us": "-1\n", "cpu,cpuacct/cpu.cfs_period_us": "100000\n"}, AVAILABLE),
        ({}, AVAILABLE),
    ],
)
def test_cpu_limit(tmp_path: Path, files: dict[str, str], expected: int) -> None:
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content)
    assert limit(tmp_path) == expected
