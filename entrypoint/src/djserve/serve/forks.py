"""The supervisor's side of the preloaded process (``djserve.preloaded``): workers asked for, over one socket.

The two processes talk over a ``SOCK_SEQPACKET`` socket pair, one pickled ``(kind, data)`` per message,
with file descriptors attached (``SCM_RIGHTS``):

- supervisor → preloaded: ``start`` once (uvicorn's configuration, the environment and ``sys.path`` the
  workers get, and the listening sockets), then ``fork`` for each worker (why its predecessor ended, and
  the worker's ends of its ping, stack and lifeline pipes);
- preloaded → supervisor: ``ready``, or ``refused`` with the names of the threads that make forking
  unsafe, once; then ``exited`` with the pid and wait status of each worker it reaped.

A forked worker first writes its pid into its lifeline, whose only writing end it holds: its end of the
file reads as the worker's exit, at once, as a ``multiprocessing`` sentinel does. The exit status comes
from the preloaded process, the worker's parent, or from this process when the preloaded process has
died: the supervisor is the sub-reaper of its descendants (``PR_SET_CHILD_SUBREAPER``), so orphaned
workers become its children, and still no worker ever runs unsupervised.

When the preloaded process dies, a new one is started in a fresh interpreter (``python -m
djserve.preloaded``), which imports the app again; forks asked for meanwhile wait in a queue, and
the workers that run keep serving. Requests it had not served are lost with it: their lifelines end with
no pid, and the supervisor asks again.

This module runs in the serving process, so it imports neither Django nor the app: that is
``djserve.preloaded``, which only the preloaded process imports.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import socket
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import wait
from typing import Any, NoReturn

logger = logging.getLogger("uvicorn.error")

MESSAGE_BYTES = 1 << 20
MAX_FDS = 16
EXIT_STATUS_WAIT = 1.0  # seconds a worker's exit status may take to arrive after its lifeline ends
PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h


def send(control: socket.socket, kind: str, data: Any = None, fds: list[int] | None = None) -> None:
    socket.send_fds(control, [pickle.dumps((kind, data))], fds or [])


def receive(control: socket.socket) -> tuple[str, Any, list[int]] | None:
    """One message and the descriptors it carried; None once the other end is closed."""
    try:
        message, fds, _, _ = socket.recv_fds(control, MESSAGE_BYTES, MAX_FDS)
    except ConnectionResetError:
        return None
    if not message:
        return None
    kind, data = pickle.loads(message)
    return kind, data, fds


def reaped() -> Iterator[tuple[int, int]]:
    """The pid and wait status of each child that has ended, without blocking."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        yield pid, status


def become_subreaper() -> bool:
    """Orphaned descendants become this process's children instead of init's (Linux 3.4)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)


def run_then_exit(target: Callable[[], object]) -> NoReturn:
    """In a forked child: run ``target``, then exit with the code Python would have exited with.

    Never returns into the stack of the parent it was forked from, whatever ``target`` raises.
    """
    code = 1
    try:
        target()
        code = 0
    except SystemExit as done:
        if done.code is None:
            code = 0
        elif isinstance(done.code, int):
            code = done.code
        else:
            print(done.code, file=sys.stderr)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


@dataclass
class Preloaded:
    """The validating child, kept alive with the app imported: its pid and the supervisor's end of its socket."""

    pid: int
    control: socket.socket


class Preloader:
    """The supervisor's handle on the preloaded process: asks it for workers, and replaces it when it dies."""

    def __init__(self, child: Preloaded, start: dict[str, Any], sockets: list[socket.socket]) -> None:
        self.pid: int | None = child.pid
        self.control: socket.socket | None = child.control
        self.start_data = start
        self.sockets = sockets
        self.statuses: dict[int, int] = {}  # wait statuses of workers and preloaded processes, by pid
        self.watched: set[int] = set()  # pids whose status someone will ask for
        self.queued: list[tuple[str | None, list[int]]] = []  # forks asked for while no preloaded process runs
        self.ready = False
        self.watched.add(child.pid)
        for listener in sockets:  # they reach each preloaded process in its start message, not by inheritance
            listener.set_inheritable(False)

    def begin(self) -> list[str] | None:
        """Hands the preloaded process its start and waits for its answer: the threads that keep it from
        forking, if any; None once it is ready (or gone, and then to be restarted)."""
        assert self.control is not None
        send(self.control, "start", self.start_data, [s.fileno() for s in self.sockets])
        while self.control is not None and not self.ready:
            message = receive(self.control)
            if message is None:
                self.gone()
            elif message[0] == "refused":
                refused: list[str] = message[1]
                return refused
            else:
                self.handle(message)
        return None

    def restart(self) -> None:
        """A new preloaded process, in a fresh interpreter that imports the app; the queued forks go to it."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        theirs.set_inheritable(True)
        argv = [sys.executable, "-m", "djserve.preloaded", str(theirs.fileno())]
        self.pid = os.posix_spawn(sys.executable, argv, os.environ)
        theirs.close()
        self.control, self.ready = ours, False
        self.watched.add(self.pid)
        send(ours, "start", self.start_data, [s.fileno() for s in self.sockets])
        queued, self.queued = self.queued, []
        for reason, fds in queued:
            self.fork(reason, fds)
            for fd in fds:
                os.close(fd)

    def fork(self, reason: str | None, fds: list[int]) -> None:
        """Asks for a worker; the caller keeps (and closes) its descriptors."""
        if self.control is not None:
            with contextlib.suppress(OSError):  # it died: the lifeline of this request ends, and it is asked again
                send(self.control, "fork", reason, fds)
                return
        self.queued.append((reason, [os.dup(fd) for fd in fds]))

    def handle(self, message: tuple[str, Any, list[int]] | None) -> None:
        if message is None:
            self.gone()
        elif message[0] == "ready":
            self.ready = True
            logger.info("Preloaded process [%d] ready: workers are forked from it", self.pid)
        elif message[0] == "refused":
            logger.error("the new preloaded process cannot fork: the app runs threads once imported (%s)", message[1])
        elif message[0] == "exited":
            pid, status = message[1]
            self.statuses[pid] = status

    def readable(self) -> None:
        assert self.control is not None
        self.handle(receive(self.control))

    def gone(self) -> None:
        """Its socket closed: it died (its status is reaped by ``reap``), or told us it cannot fork."""
        if self.control is not None:
            self.control.close()
        self.control, self.ready = None, False

    def reap(self) -> None:
        """Collect the exit of this process's children: preloaded processes, and workers they left orphaned
        (ours as sub-reaper). Those no one waits for (a worker's own orphaned children) are just reaped."""
        for pid, status in reaped():
            if pid in self.watched:
                self.statuses[pid] = status

    def exit_code(self, pid: int, timeout: float = EXIT_STATUS_WAIT) -> int | None:
        """An ended process's exit code as ``multiprocessing`` gives it (-N: killed by signal N); None if its
        status never came (lost with a preloaded process that died when this process could not adopt it)."""
        deadline = time.monotonic() + timeout
        while pid not in self.statuses:
            self.reap()
            left = deadline - time.monotonic()
            if pid in self.statuses or left <= 0:
                break
            if self.control is not None and wait([self.control], min(left, 0.01)):
                self.readable()
            else:
                time.sleep(min(left, 0.005))
        self.watched.discard(pid)
        status = self.statuses.pop(pid, None)
        return None if status is None else os.waitstatus_to_exitcode(status)

    def abandon_requests(self) -> None:
        """On the way out: forks not served yet are dropped, so that their lifelines end."""
        for _, fds in self.queued:
            for fd in fds:
                os.close(fd)
        self.queued = []
        if self.pid is not None and self.control is not None and not self.ready:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)  # still importing: it would fork them first

    def close(self) -> None:
        """The preloaded process exits once its socket closes."""
        self.abandon_requests()
        self.gone()


class Forked:
    """The part of ``multiprocessing.Process`` the supervisor uses, for a worker forked by the preloaded process."""

    def __init__(self, preloader: Preloader, reason: str | None, passed: list[int]) -> None:
        self.preloader = preloader
        self.reason = reason
        self.passed = passed  # the worker's ends of its pipes, handed over at start
        self.pid: int | None = None  # known once the worker writes it into its lifeline
        self.exitcode: int | None = None
        self.ended = False
        self.sentinel, self._lifeline = os.pipe()

    def start(self) -> None:
        self.preloader.fork(self.reason, [*self.passed, self._lifeline])
        os.close(self._lifeline)

    def lifeline(self) -> bool:
        """Its lifeline is readable: read the pid it writes first. True once it has ended."""
        data = os.read(self.sentinel, 64)
        if not data:
            self.ended = True
        elif self.pid is None:
            self.pid = int(data)
            self.preloader.watched.add(self.pid)
        return self.ended

    def is_alive(self) -> bool:
        return not self.ended

    def join(self, timeout: float | None = None) -> None:
        while not self.ended:
            if not wait([self.sentinel], timeout):
                return
            self.lifeline()
        if self.pid is not None and self.exitcode is None:
            self.exitcode = self.preloader.exit_code(self.pid)

    def kill(self) -> None:
        self._signal(signal.SIGKILL)

    def terminate(self) -> None:
        self._signal(signal.SIGTERM)

    def _signal(self, signum: int) -> None:
        # Its lifeline has not ended, so the process exists and the pid is still its own.
        if self.pid is not None and not self.ended:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.sentinel)
