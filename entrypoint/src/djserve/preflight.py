"""Everything that can fail before anything binds: resolution, validation and the app import.

``djserve serve`` does it in a short-lived child process that hands the resolved configuration back, so the
serving process (the workers' supervisor, the container's main process under tini) never imports Django, the user's
settings or the app: it stays small, and a broken app still ends in exit 78 before the port is bound.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, NoReturn

from djserve.defaults import EX_CONFIG, REDACTED

if TYPE_CHECKING:
    from djserve.config.envfiles import Expanded
    from djserve.config.model import KitConfig, Problem
    from djserve.handoff import Launch
    from djserve.serve.forks import Preloaded

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


def resolved(
    args: Sequence[str],
    *,
    with_app: bool,
    expanded: Expanded | None = None,
    before_import: Callable[[KitConfig], list[Problem]] | None = None,
) -> KitConfig:
    """The resolved configuration, or exit 78 listing every problem. Imports Django's settings, and the app
    ``with_app`` or when ``interface = "auto"`` must look at it to resolve.

    ``X_FILE`` variables become ``X`` first, before Django's settings are imported (``djserve.config.envfiles``),
    unless the caller did that already and hands over what it found. ``before_import`` runs between the
    resolution and the app import, and may add problems.
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
        if before_import is not None:
            config.problems += before_import(config)
        import_apps(config)
    problems = expanded.problems + config.problems
    if problems:
        fail(problems, expanded)
    return config


def _metrics_directory(config: KitConfig, reserved: str | OSError) -> list[Problem]:
    """With metrics on, the directory in the environment before the app import: prometheus_client, which
    the project may import, reads it once, then, and with ``preload`` every worker inherits that import."""
    from djserve.config.model import Problem
    from djserve.defaults import METRICS_DIRECTORY_VARIABLE
    from djserve.serve import metrics_dir

    if not config["metrics"]:
        return []
    try:
        metrics_dir.use(reserved)
    except OSError as error:
        # A read-only root with no tmpfs at /tmp, say: a problem of the container's configuration.
        return [
            Problem(
                config.where("metrics"),
                f"cannot prepare the metrics directory ({error}); mount a tmpfs at /tmp, set "
                f"{METRICS_DIRECTORY_VARIABLE} to a writable directory, or set metrics = false",
            )
        ]
    return []


def _child(
    args: Sequence[str], expanded: Expanded, result: Connection, control: socket.socket, reserved: str | OSError
) -> None:
    from djserve import logs
    from djserve.config import discovery

    # Forked with the parent's prestart handlers: a stop ends this child quietly, as the parent reports it.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    from djserve.config.uvicorn_args import launch

    config = resolved(
        args, with_app=True, expanded=expanded, before_import=lambda kit: _metrics_directory(kit, reserved)
    )
    logs.configure(config["log_format"])
    for notice in config.notices:
        log.info("%s", notice)
    for warning in config.warnings:
        log.warning("%s", warning)
    # Once, here, where Django's settings are loaded; a prestart collectstatic may still create it.
    if config["serve_static"] and not config["collectstatic"]:
        discovery.warn_if_no_static_root()
    launched = launch(config)
    result.send(launched)
    result.close()
    if config["preload"]:
        from djserve import preloaded

        preloaded.serve(control, launch=launched)


def in_child(args: Sequence[str]) -> tuple[Launch, Preloaded | None]:
    """``resolved(args, with_app=True)`` in a forked child, as a Launch; its exit code is ours if it sends none.

    With ``preload`` the child stays, with the app imported, as the preloaded process
    (``djserve.preloaded``); it is returned with the Launch. ``X_FILE`` variables are expanded here
    first, so that the workers this process starts inherit ``X``.
    """
    from djserve.config import envfiles
    from djserve.serve import metrics_dir
    from djserve.serve.forks import Preloaded, run_then_exit

    expanded = envfiles.expand(os.environ)
    reserved = metrics_dir.reserve()
    receiving, sending = multiprocessing.Pipe(duplex=False)
    control, child_control = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # Forked, not spawned, once what both sides use is imported: uvicorn (the child's options, this process's
    # server) and djserve's server (the preloaded process's workers). The child starts with them loaded,
    # which saves it an interpreter start and 100 ms of imports (bench/findings.md); this process has no
    # threads yet, and it never imports what the child imports.
    from djserve.serve import server, supervisor  # noqa: F401

    pid = os.fork()
    if pid == 0:
        receiving.close()
        control.close()
        run_then_exit(lambda: _child(list(args), expanded, sending, child_control, reserved))
    # The serving process: what it imported lives as long as it does, so no collection need scan it.
    gc.freeze()
    gc.enable()
    sending.close()
    child_control.close()
    try:
        launch: Launch = receiving.recv()
    except EOFError:  # it exited first: problems printed, --help shown, or a crash
        code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        sys.exit(128 - code if code < 0 else code)
    except BaseException:  # stopped (SIGTERM raises Terminated) while it was still working
        os.kill(pid, signal.SIGTERM)
        os.waitpid(pid, 0)
        raise
    finally:
        receiving.close()
    if launch.values["preload"]:
        return launch, Preloaded(pid, control)
    control.close()
    os.waitpid(pid, 0)
    return launch, None
