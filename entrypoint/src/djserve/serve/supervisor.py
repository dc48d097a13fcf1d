"""The workers' supervisor: uvicorn's, but every worker is checked at once and a stuck one is reported.

uvicorn 0.54's ``Multiprocess`` checks one worker at a time and waits up to
``timeout_worker_healthcheck`` for an answer on a pipe whose both ends it holds, so it notices an exited
worker only after that timeout, and checks no other worker meanwhile (``bench/findings.md``). Here one
round pings every worker and waits on all the answers and on every worker's exit (its process sentinel)
together: an exited worker is replaced at once, and a slow one delays no other.

A worker answers from its event loop (``djserve.serve.server``). One whose loop has not answered within
``timeout_worker_healthcheck`` is stuck: like gunicorn's ``WORKER TIMEOUT``, the supervisor has it write
the stack of every thread (faulthandler, on SIGUSR1) into a pipe, logs it, then kills and replaces it.

This module reads uvicorn 0.54 internals (``Process.parent_conn``/``child_conn``/``process``/``_server``
and the ping protocol, ``Multiprocess.processes``/``processes_num``/``sockets``/``should_exit`` and its
signal queue); the pin in pyproject.toml is for them. Django is never imported here: the supervisor stays
a small process.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import os
import pickle
import signal
import sys
import time
from multiprocessing import Pipe
from multiprocessing.connection import wait
from socket import socket
from typing import Any

from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.server import Server as UvicornServer
from uvicorn.supervisors.multiprocess import Multiprocess
from uvicorn.supervisors.multiprocess import Process as UvicornProcess

from djserve.serve import metrics_dir
from djserve.serve.server import Server

logger = logging.getLogger("uvicorn.error")

PING_INTERVAL = 0.5  # uvicorn's supervisor pings as often
STACK_SIGNAL = signal.SIGUSR1
STACK_GRACE = 1.0  # seconds a stuck worker has to write its stack before SIGKILL
# Until its first answer a worker is still starting its interpreter and importing uvicorn, before anything
# can answer a ping (or take SIGUSR1): on a loaded or throttled CPU that takes seconds. Like gunicorn's
# boot, it gets a longer allowance then; once it has answered, timeout_worker_healthcheck applies.
STARTUP_ALLOWANCE = 30.0


class WorkerProcess(UvicornProcess):
    """A worker process, with the supervisor's record of its pings."""

    def __init__(self, config: Config, sockets: list[socket]) -> None:
        # The whole object travels to the worker when it starts; the worker keeps the writing end.
        self.stacks, self.stack_writer = Pipe(duplex=False)
        super().__init__(config, sockets)
        self.pinged_at: float | None = None  # an unanswered ping, sent then
        self.next_ping = 0.0
        self.stuck_at: float | None = None  # asked for its stack then
        self.killed = False
        self.stack = b""
        self.has_answered = False

    # In the worker.

    def target(self, sockets: list[socket] | None = None) -> None:
        faulthandler.register(STACK_SIGNAL, file=self.stack_writer.fileno(), all_threads=True)
        self.server.run(sockets)

    @property
    def server(self) -> UvicornServer:
        if self._server is None:
            self._server = Server(self.config, pings=self.child_conn)
        return self._server

    # In the supervisor.

    def _healthcheck(self, timeout: float) -> bool | None:
        """uvicorn's, but an exited worker ends the wait at once (used by the rolling restart on SIGHUP)."""
        try:
            self.parent_conn.send(b"ping")
            if self.parent_conn in wait([self.parent_conn, self.process.sentinel], timeout):
                started: bool = self.parent_conn.recv()
                return started
        except (OSError, EOFError, pickle.UnpicklingError):
            pass
        return None

    def send_ping(self, now: float) -> None:
        try:
            self.parent_conn.send(b"ping")
        except OSError:
            return  # gone: its sentinel says so
        self.pinged_at = now

    def answered(self, now: float) -> None:
        try:
            self.parent_conn.recv()
        except (OSError, EOFError, pickle.UnpicklingError):
            return
        self.pinged_at = None
        self.has_answered = True
        self.next_ping = now + PING_INTERVAL

    def allowance(self, timeout: float) -> float:
        return timeout if self.has_answered else max(timeout, STARTUP_ALLOWANCE)

    def ask_for_stack(self, now: float) -> None:
        assert self.process.pid is not None
        self.stuck_at = now
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, STACK_SIGNAL)

    def read_stack(self) -> None:
        while self.stacks.poll():
            chunk = os.read(self.stacks.fileno(), 65536)
            if not chunk:
                break
            self.stack += chunk

    def close(self) -> None:
        for connection in (self.parent_conn, self.child_conn, self.stacks, self.stack_writer):
            connection.close()


class Supervisor(Multiprocess):
    """uvicorn's supervisor (signals, SIGHUP restart, SIGTTIN/SIGTTOU), with djserve's workers and checks."""

    processes: list[WorkerProcess]  # type: ignore[assignment]

    def __init__(self, config: Config, sockets: list[socket]) -> None:
        super().__init__(config, sockets)
        self.startup_failed = False
        # uvicorn's handlers queue the signals; this pipe also wakes the round's wait, so SIGTERM reaches
        # the workers at once rather than after the round.
        self.wakeup, wakeup_write = os.pipe()
        for fd in (self.wakeup, wakeup_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)

    def spawn(self) -> WorkerProcess:
        worker = WorkerProcess(self.config, self.sockets)
        worker.start()
        return worker

    def init_processes(self) -> None:
        self.processes = [self.spawn() for _ in range(self.processes_num)]

    def run(self) -> None:
        logger.info("Started parent process [%d]", os.getpid())
        self.init_processes()
        while not self.should_exit.is_set():
            self.keep_subprocess_alive()
            self.handle_signals()
        self.terminate_all()
        self.join_all()
        logger.info("Stopping parent process [%d]", os.getpid())
        if self.startup_failed:
            sys.exit(STARTUP_FAILURE)

    def keep_subprocess_alive(self) -> None:
        """One round: ping who is due, wait for answers, exits and stacks together, then act on them."""
        now = time.monotonic()
        waiting: dict[Any, tuple[str, WorkerProcess | None]] = {self.wakeup: ("signal", None)}
        wake = now + PING_INTERVAL
        for worker in self.processes:
            if worker.killed:
                pass
            elif worker.stuck_at is not None:
                waiting[worker.stacks] = ("stack", worker)
                wake = min(wake, worker.stuck_at + STACK_GRACE)
            elif worker.pinged_at is None:
                if now >= worker.next_ping:
                    worker.send_ping(now)
                else:
                    wake = min(wake, worker.next_ping)
            if worker.pinged_at is not None and worker.stuck_at is None:
                waiting[worker.parent_conn] = ("answer", worker)
                wake = min(wake, worker.pinged_at + worker.allowance(self.config.timeout_worker_healthcheck))
            waiting[worker.process.sentinel] = ("exit", worker)
        for ready in wait(list(waiting), timeout=max(0.0, wake - now)):
            event, whose = waiting[ready]
            if whose is None:
                with contextlib.suppress(BlockingIOError):
                    os.read(self.wakeup, 512)  # the queued signals are handled after this round
            elif event == "exit":
                self.replace(whose)
            elif event == "answer":
                whose.answered(time.monotonic())
            else:
                whose.read_stack()
        self.check_timeouts(time.monotonic())

    def check_timeouts(self, now: float) -> None:
        timeout = self.config.timeout_worker_healthcheck
        for worker in self.processes:
            if worker.killed or worker.process.exitcode is not None:
                continue
            waited = None if worker.pinged_at is None else now - worker.pinged_at
            if worker.stuck_at is None and waited is not None and waited > worker.allowance(timeout):
                worker.ask_for_stack(now)
            elif worker.stuck_at is not None and now - worker.stuck_at >= STACK_GRACE:
                worker.read_stack()
                logger.critical(
                    "worker %d stuck: its event loop has not answered for %ss (WORKER TIMEOUT); killing it. "
                    "Its threads:\n%s",
                    worker.pid,
                    timeout,
                    worker.stack.decode(errors="replace").strip(),
                )
                worker.killed = True
                worker.process.kill()  # its sentinel brings the replacement in the next round

    def replace(self, worker: WorkerProcess) -> None:
        """A worker exited: reap it and, unless the app cannot start or we are stopping, start another."""
        worker.process.join()
        worker.close()
        self.on_worker_exit(worker)
        if worker.exitcode == STARTUP_FAILURE and not worker.killed:
            # It failed before serving: the app would fail the same way in every new worker.
            logger.error("Child process [%d] failed to start, stopping the parent process.", worker.pid)
            self.startup_failed = True
            self.should_exit.set()
        if self.should_exit.is_set():
            self.processes.remove(worker)
            return
        self.processes[self.processes.index(worker)] = self.spawn()

    def on_worker_exit(self, worker: WorkerProcess) -> None:
        """Called once for every worker that ended, however it ended, after it is reaped."""
        code = worker.exitcode
        how = f"killed by {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
        logger.info("Child process [%d] ended: %s", worker.pid, how)
        if worker.pid is not None:
            metrics_dir.worker_exited(worker.pid)

    def join_all(self) -> None:
        for worker in self.processes:
            worker.join()
            self.on_worker_exit(worker)

    def restart_all(self) -> None:
        """SIGHUP: replace each worker, bringing its replacement into service before retiring the old one."""
        for index, old in enumerate(self.processes):
            if self.should_exit.is_set():
                return
            new = self.spawn()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck, self.should_exit):
                new.kill()
                new.join()
                new.close()
                if not self.should_exit.is_set():
                    logger.error("New child process [%d] was not ready in time; keeping [%d]", new.pid, old.pid)
                return
            old.terminate()
            old.join()
            old.close()
            self.on_worker_exit(old)
            self.processes[index] = new

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self.spawn())
