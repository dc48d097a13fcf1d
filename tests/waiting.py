"""The one bounded wait of every suite (``pythonpath`` in pytest.ini puts this folder on the path)."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until(
    check: Callable[[], bool], timeout: float, what: str, pause: float = 0.1
) -> None:
    """Until ``check()`` is true; fails after ``timeout`` seconds, saying what it waited for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(pause)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
