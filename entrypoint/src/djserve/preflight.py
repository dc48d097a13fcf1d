"""Everything that can fail before anything binds: resolution, validation and the app import.

``djserve serve`` does it in a short-lived child process that hands the resolved configuration back, so the
serving process (the workers' supervisor, the container's main process under tini) never imports Django, the user's
settings or the app: it stays small, and a broken app still ends in exit 78 before the port is bound.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import sys
from collections.abc import Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, NoReturn

from djserve.defaults import EX_CONFIG, REDACTED

if TYPE_CHECKING:
    from djserve.config.envfiles import Expanded
    from djserve.config.model import KitConfig, Problem
    from djserve.handoff import Launch

log = logging.getLogger("djserve")


def _hidden(line: str, values: Sequence[str]) -> str:
    """A problem line with every value read from a file blanked, wherever a message quoted it."""
    for value in values:
        if value:
            line = line.replace(value, REDACTED)
    return line


def fail(problems: Sequence[Problem], expanded: Expanded) -> NoReturn:
    """Exit 78 with one line per problem, each with every value read from a file blanked."""
    secrets = sorted((os.environ[var] for var in expanded.files), key=len, reverse=True)
    for problem in problems:
        print(_hidden(str(problem), secrets), file=sys.stderr)
    sys.exit(EX_CONFIG)


def resolved(args: Sequence[str], *, with_app: bool, expanded: Expanded | None = None) -> KitConfig:
    """The resolved configuration, or exit 78 listing every problem. Imports Django's settings, and the app
    ``with_app`` or when ``interface = "auto"`` must look at it to resolve.

    ``X_FILE`` variables become ``X`` first, before Django's settings are imported (``djserve.config.envfiles``),
    unless the caller did that already and hands over what it found.
    """
    import click

    from djserve.config import envfiles
    from djserve.config.resolve import import_apps, resolve

    if expanded is None:
        expanded = envfiles.expand(os.environ)
    try:
        config = resolve(args, os.environ, expanded.files)
    except click.exceptions.Exit as done:  # --help
        sys.exit(done.exit_code)
    if with_app or config["interface"] == "auto":
        import_apps(config)
    problems = expanded.problems + config.problems
    if problems:
        fail(problems, expanded)
    return config


def _child(args: Sequence[str], expanded: Expanded, result: Connection) -> None:
    import signal

    from djserve import logs
    from djserve.config import discovery

    # Forked with the parent's prestart handlers: a stop ends this child quietly, as the parent reports it.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    from djserve.config.uvicorn_args import launch

    config = resolved(args, with_app=True, expanded=expanded)
    logs.configure(config["log_format"])
    for notice in config.notices:
        log.info("%s", notice)
    for warning in config.warnings:
        log.warning("%s", warning)
    # Once, here, where Django's settings are loaded; a prestart collectstatic may still create it.
    if config["serve_static"] and not config["collectstatic"]:
        discovery.warn_if_no_static_root()
    result.send(launch(config))


def in_child(args: Sequence[str]) -> Launch:
    """``resolved(args, with_app=True)`` in a forked child, as a Launch; its exit code is ours if it sends none.

    ``X_FILE`` variables are expanded here first, so that the workers this process starts inherit ``X``.
    """
    from djserve.config import envfiles

    expanded = envfiles.expand(os.environ)
    receiving, sending = multiprocessing.Pipe(duplex=False)
    # Forked, not spawned: the child starts with uvicorn and djserve already imported, which saves it an
    # interpreter start; this process has no threads yet, and it never imports what the child imports.
    child = multiprocessing.get_context("fork").Process(
        target=_child, args=(list(args), expanded, sending), name="preflight"
    )
    child.start()
    sending.close()
    try:
        launch: Launch = receiving.recv()
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
    return launch
