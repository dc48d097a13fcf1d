"""HTTP load: Debian's wrk inside the server's network namespace, pinned to the load core."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from bench.containers import PORT, Container

SCRIPT = Path(__file__).with_name("report.lua")
MARKER = "WRK-JSON "
ERRORS = ("connect", "read", "write", "status", "timeout")


@dataclass(frozen=True)
class Load:
    requests: int
    seconds: float
    p99_ms: float
    max_ms: float
    errors: dict[str, int]

    @property
    def answered(self) -> int:
        """Requests answered with 2xx or 3xx: wrk counts the others among its requests too."""
        return self.requests - self.errors["status"]

    @property
    def rps(self) -> float:
        return self.answered / self.seconds

    @property
    def failed(self) -> int:
        """Requests a user would see fail: socket errors, timeouts and non-2xx/3xx answers."""
        return sum(self.errors.values())


def run(container: Container, path: str, seconds: int, connections: int) -> Load:
    options = (f"-c{connections}", f"-d{seconds}s", "-t1", "--timeout", "5s", "-s", str(SCRIPT))
    url = f"http://127.0.0.1:{PORT}{path}"
    command = [*container.load_prefix(), "wrk", *options, "-H", "Host: localhost", url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in done.stdout.splitlines() if x.startswith(MARKER)), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk {path} failed ({done.returncode}): {done.stdout[-500:]} {done.stderr[-500:]}")
    raw = json.loads(line.removeprefix(MARKER))
    return Load(
        requests=raw["requests"],
        seconds=raw["duration_us"] / 1e6,
        p99_ms=raw["p99_us"] / 1e3,
        max_ms=raw["max_us"] / 1e3,
        errors={name: raw[name] for name in ERRORS},
    )
