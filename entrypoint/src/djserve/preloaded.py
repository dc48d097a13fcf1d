"""The preloaded process: the app imported once, outside any event loop, and every worker forked from it.

With ``preload``, the validating child (``djserve.preflight``) does not exit once it has handed its result
over: it has imported the app already, so it becomes this process. Workers forked from it start with
Django, the project and uvicorn's machinery imported, and share those pages with it and with each other
until they write to them. As Python's documentation advises for fork without exec
(https://docs.python.org/3/library/gc.html#gc.freeze), the imports run with the garbage collector off,
and ``gc.freeze()`` after them and before each fork keeps the workers' collector from writing to every
object they inherited. The few hundred objects the imports left unreachable stay, shared. What Django
does on its first request (the URLconf, the template engines) is done here too, once (``djserve.warmup``).

Before it forks anything it makes forking safe:

- Django's database connections are closed, so that no connection is shared by two processes; a project
  that queries at import gets one connection per worker, as it would without preload.
- If a thread besides the main one runs (an SDK that starts one in the settings, say), it does not fork:
  a forked child would hold that thread's locks with no thread to release them. It says which threads
  (``refused``), and the supervisor spawns its workers as it does without preload.

It forks a worker on each request of the supervisor (``djserve.serve.forks``, which holds the protocol),
reaps its workers and reports each exit. It exits when the supervisor's socket closes.

A preloaded process that died is replaced by a fresh interpreter running this module, which imports the
app first: ``python -m djserve.preloaded FD``. The serving process never imports this module (an import
contract of ``make lint``).
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import logging
import os
import select
import signal
import socket
import sys
import threading
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, NoReturn

from uvicorn.config import HTTP_PROTOCOLS, LIFESPAN, WS_PROTOCOLS, Config
from uvicorn.importer import import_from_string

from djserve import warmup
from djserve.defaults import EX_CONFIG
from djserve.handoff import Launch, WorkerConfig
from djserve.serve import forks
from djserve.serve.server import serve_worker

logger = logging.getLogger("uvicorn.error")


def serve(control: socket.socket, *, launch: Launch | None) -> NoReturn:
    """Wait for the supervisor's start, then fork a worker for each request, until the socket closes.

    ``launch``: the validating child's, whose app is imported already; it imports the workers' machinery
    too while the serving process runs its prestart steps and binds. None: a new preloaded process, which
    imports both once started.
    """
    if launch is not None:
        _import_the_workers_machinery(Config(**launch.config), launch.worker)
    started = forks.receive(control)
    if started is None:  # the serving process stopped first (a prestart step failed, say)
        os._exit(0)
    _, start, fds = started
    # The workers get exactly the serving process's environment and sys.path, as spawned workers do.
    os.environ.clear()
    os.environ.update(start["environ"])
    sys.path[:] = start["sys_path"]
    config = Config(**start["config"])
    sockets = [socket.socket(fileno=fd) for fd in fds]
    worker = WorkerConfig.from_environ(os.environ)
    if launch is None:
        _import_app(worker)
        _import_the_workers_machinery(config, worker)
    # After the prestart steps, as a worker's first request would be: a URLconf may read the database.
    warmup.warm()
    _close_database_connections()
    threads = [thread.name for thread in threading.enumerate() if thread is not threading.main_thread()]
    if threads:
        forks.send(control, "refused", threads)
        os._exit(0)
    # The imports ran with collections off (djserve.cli): what they made is frozen, so that no collection,
    # here or in a worker, scans it or writes to its pages; collections resume for what comes after.
    gc.freeze()
    gc.enable()
    _name("djserve-preload")
    forks.send(control, "ready")
    _fork_on_request(control, config, sockets)


def _import_app(worker: WorkerConfig) -> None:
    from djserve.app.factory import load_apps
    from djserve.project import AppNotFound

    try:
        load_apps(worker)
    except AppNotFound as error:
        print(f"preloaded process: {error}", file=sys.stderr)
        os._exit(EX_CONFIG)


def _import_the_workers_machinery(config: Config, worker: WorkerConfig) -> None:
    """What every worker imports before it serves, once here: uvicorn's protocols and loop, djserve's stack."""
    for name, known in ((config.http, HTTP_PROTOCOLS), (config.ws, WS_PROTOCOLS)):
        spec = known.get(name, name) if isinstance(name, str) else None
        if spec is not None:
            import_from_string(spec)
    import_from_string(LIFESPAN[config.lifespan])
    config.get_loop_factory()
    import_from_string(str(config.app))  # djserve's app factory, not called: it starts the worker's threads
    needed = {
        "djserve.app.wsgi": worker.interface != "asgi",
        "djserve.app.hybrid": worker.interface == "hybrid",
        "djserve.app.static": worker.serve_static,
        # After the environment names the metrics directory: prometheus_client reads it once, at import.
        "djserve.app.observe": worker.metrics,
        "prometheus_client": worker.metrics,
    }
    for module in (name for name, wanted in needed.items() if wanted):
        importlib.import_module(module)


def _close_database_connections() -> None:
    """Django's connections of this process, if Django is loaded: a forked copy would share the socket."""
    db: Any = sys.modules.get("django.db")
    if db is not None:
        db.connections.close_all()


def _name(name: str) -> None:
    """The process's name in ps and top, where every djserve process otherwise reads as the same command.
    Written where prctl(PR_SET_NAME) would set it, without loading ctypes for it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text(name)


def _fork_on_request(control: socket.socket, config: Config, sockets: list[socket.socket]) -> NoReturn:
    wakeup, wakeup_write = os.pipe()
    for fd in (wakeup, wakeup_write):
        os.set_blocking(fd, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)
    own = [control.fileno(), wakeup, wakeup_write]
    while True:
        readable, _, _ = select.select([control.fileno(), wakeup], [], [])
        if wakeup in readable:
            with contextlib.suppress(BlockingIOError):
                os.read(wakeup, 512)
        try:
            _report_exits(control)
            if control.fileno() in readable:
                request = forks.receive(control)
                if request is None:
                    break
                _, reason, fds = request
                _fork(config, sockets, reason, fds, own)
        except OSError:  # the supervisor is gone
            break
    os._exit(0)


def _report_exits(control: socket.socket) -> None:
    for pid, status in forks.reaped():
        forks.send(control, "exited", (pid, status))


def _fork(config: Config, sockets: list[socket.socket], reason: str | None, fds: list[int], own: list[int]) -> None:
    pings, stacks, lifeline = fds
    gc.freeze()
    try:
        pid = os.fork()
    except OSError as error:  # out of memory or processes: the lifeline ends unwritten, and it is asked again
        logger.error("cannot fork a worker: %s", error)  # noqa: TRY400 - one line: its traceback says no more
        pid = -1
    if pid:
        for fd in fds:
            os.close(fd)
        return

    def worker() -> None:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in own:
            os.close(fd)
        os.write(lifeline, str(os.getpid()).encode())  # kept open: its end is this process's end
        _name("djserve-worker")
        serve_worker(config, sockets, Connection(pings), stacks, reason)

    forks.run_then_exit(worker)


if __name__ == "__main__":
    gc.disable()  # as in the first preloaded process: no collections while the app is imported
    serve(socket.socket(fileno=int(sys.argv[1])), launch=None)
