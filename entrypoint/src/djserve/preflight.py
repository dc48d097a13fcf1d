"""Everything that can fail before anything binds: resolution, validation and the app import.

``djserve serve`` does it in a short-lived child process that hands the resolved settings back, so the
serving process (the workers' supervisor, the container's main process under tini) never imports Django, the user's
settings or the app: it stays small, and a broken app still ends in exit 78 before the port is bound.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from djserve.launch import Launch
    from djserve.settings import Settings

EX_CONFIG = 78  # sysexits.h: configuration error


def settings(args: Sequence[str], *, with_app: bool) -> Settings:
    """Resolved settings, or exit 78 listing every problem. Imports Django's settings (and the app)."""
    import click

    from djserve.settings import load_app, resolve

    try:
        resolved = resolve(args, os.environ)
    except click.exceptions.Exit as done:  # --help
        sys.exit(done.exit_code)
    if with_app:
        load_app(resolved)
    if resolved.problems:
        for problem in resolved.problems:
            print(problem, file=sys.stderr)
        sys.exit(EX_CONFIG)
    return resolved


def _child(args: Sequence[str], result: Connection) -> None:
    from djserve.serving import launch

    result.send(launch(settings(args, with_app=True)))


def in_child(args: Sequence[str]) -> Launch:
    """``settings(args, with_app=True)`` in a spawned child, as a Launch; its exit code is ours if it sends none."""
    receiving, sending = multiprocessing.Pipe(duplex=False)
    child = multiprocessing.get_context("spawn").Process(target=_child, args=(list(args), sending), name="preflight")
    child.start()
    sending.close()
    try:
        resolved: Launch = receiving.recv()
    except EOFError:  # it exited first: problems printed, --help shown, or a crash
        child.join()
        code = child.exitcode or 0
        sys.exit(128 - code if code < 0 else code)
    except BaseException:  # stopped (SIGTERM raises Terminated) while it was still working
        child.terminate()
        child.join()
        raise
    finally:
        receiving.close()
    child.join()
    return resolved
