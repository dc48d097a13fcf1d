"""What runs before the server: wait_for, migrate, collectstatic, then the user's script.

Each step is timed and named in the log; a failing step ends djserve with its exit code. Django's
commands run as child processes so a migration leaves no connection or state in the server process.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from types import FrameType
from typing import Any

log = logging.getLogger("djserve")


class StepFailed(Exception):
    def __init__(self, step: str, message: str, code: int = 1) -> None:
        super().__init__(f"prestart step {step!r} failed: {message}")
        self.code = code


class Terminated(BaseException):
    """SIGTERM or SIGINT during prestart: stop now rather than after a long migration or wait.

    Not an Exception, like KeyboardInterrupt: a signal that lands while a log line is written must not
    be swallowed by logging's error handler.
    """


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated


@contextmanager
def _on_stop(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, restored in previous.items():
            signal.signal(sig, restored)


def stoppable() -> AbstractContextManager[None]:
    """SIGTERM or SIGINT raise Terminated inside the block."""
    return _on_stop(_terminate)


def _wait_for(targets: tuple[tuple[str, int], ...], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for host, port in targets:
        while True:
            try:
                socket.create_connection((host, port), timeout=1).close()
                break
            except OSError as error:
                if time.monotonic() >= deadline:
                    raise StepFailed("wait_for", f"{host}:{port} unreachable after {timeout:g}s ({error})") from None
                time.sleep(0.5)


def _run(step: str, argv: list[str]) -> None:
    child = None
    stops: list[int] = []
    try:
        # A stop while the process starts waits until the process is known, so that it reaches it too.
        with _on_stop(lambda signum, frame: stops.append(signum)):
            # Its own process group, so a stop reaches what a script started too (a shell's `sleep`, say).
            child = subprocess.Popen(argv, start_new_session=True)
        for signum in stops[:1]:
            signal.raise_signal(signum)  # now it lands, as Terminated, below
        code = child.wait()
    except Terminated:
        if child is not None:
            os.killpg(child.pid, signal.SIGTERM)
            child.wait()
        raise
    if code:
        raise StepFailed(step, f"{' '.join(argv)} exited with {code}", code)


def steps(values: Mapping[str, Any]) -> list[tuple[str, Callable[[], None]]]:
    manage = [sys.executable, "-m", "django"]
    planned: list[tuple[str, Callable[[], None]]] = []
    if values["wait_for"]:
        planned.append(("wait_for", lambda: _wait_for(values["wait_for"], values["wait_timeout"])))
    if values["migrate"]:
        planned.append(("migrate", lambda: _run("migrate", [*manage, "migrate", "--noinput"])))
    if values["collectstatic"]:
        planned.append(("collectstatic", lambda: _run("collectstatic", [*manage, "collectstatic", "--noinput"])))
    if values["prestart"]:
        planned.append(("prestart", lambda: _run("prestart", [values["prestart"]])))
    return planned


def run(values: Mapping[str, Any]) -> None:
    with stoppable():
        for name, step in steps(values):
            started = time.monotonic()
            log.info("prestart %s: started", name)
            step()
            log.info("prestart %s: done in %.2fs", name, time.monotonic() - started)
