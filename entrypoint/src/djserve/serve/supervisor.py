"""The workers' supervisor: uvicorn's, but every worker is checked at once, and none is lost to a recycle.

uvicorn 0.54's ``Multiprocess`` checks one worker at a time and waits up to
``timeout_worker_healthcheck`` for an answer on a pipe whose both ends it holds, so it notices an exited
worker only after that timeout, and checks no other worker meanwhile (``bench/findings.md``). Here one
round pings every worker and waits on all the answers and on every worker's exit (its process sentinel)
together: an exited worker is replaced at once, and a slow one delays no other.

A worker answers from its event loop (``djserve.serve.server``). One whose loop has not answered within
``timeout_worker_healthcheck`` is stuck: like gunicorn's ``WORKER TIMEOUT``, the supervisor has it write
the stack of every thread (faulthandler, on SIGUSR1) into a pipe, logs it, then kills and replaces it.

Workers come from the preloaded process when ``preload`` is on (``djserve.serve.forks``), else they are
spawned as uvicorn spawns them; replacements come from the same place, whatever the reason.

Planned recycles never dip below ``workers`` serving: a worker at its request limit (it says so in its
answer to a ping), above ``max_worker_memory`` (its unique memory, read twice in a row) or past
``max_worker_lifetime`` gets a successor first, and is stopped, to drain as usual, only once the
successor answers. One successor starts at a time.

Workers that die within seconds of starting, again and again, are restarted later and later
(exponentially, up to a cap), with one line that says how the last one ended: a crash loop neither
spins nor hides. The health probe fails meanwhile, as no worker answers.

This module reads uvicorn 0.54 internals (``Process.parent_conn``/``child_conn``/``process``, the ping
protocol, ``Multiprocess.processes``/``processes_num``/``sockets``/``should_exit`` and its signal queue,
``uvicorn._subprocess.get_subprocess``); the pin in pyproject.toml is for them. Django is never imported
here: the supervisor stays a small process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import signal
import sys
import time
from dataclasses import dataclass
from multiprocessing import Pipe
from multiprocessing.connection import wait
from socket import socket
from typing import Any

from uvicorn._subprocess import get_subprocess
from uvicorn.config import STARTUP_FAILURE, Config
from uvicorn.supervisors.multiprocess import Multiprocess
from uvicorn.supervisors.multiprocess import Process as UvicornProcess

from djserve import memory
from djserve.serve import forks, metrics_dir
from djserve.serve.server import STACK_SIGNAL, serve_worker

logger = logging.getLogger("uvicorn.error")

PING_INTERVAL = 0.5  # uvicorn's supervisor pings as often
STARTING_PING = 0.05  # a worker that has not started yet is asked again sooner: its successor waits on it
STACK_GRACE = 1.0  # seconds a stuck worker has to write its stack before SIGKILL
# Until its first answer a worker is still starting its interpreter and importing uvicorn, before anything
# can answer a ping (or take SIGUSR1): on a loaded or throttled CPU that takes seconds. Like gunicorn's
# boot, it gets a longer allowance then; once it has answered, timeout_worker_healthcheck applies.
STARTUP_ALLOWANCE = 30.0
MEMORY_EVERY = 2.0  # seconds between two reads of the workers' memory, with max_worker_memory
LIFETIME_JITTER = 0.1  # max_worker_lifetime is shortened by up to this share, so workers do not all go at once
CRASH_WINDOW = 5.0  # a worker that ends within this many seconds of its start died young
BACKOFF_FIRST = 0.5  # seconds before the restart after the second young death in a row, doubled each time
BACKOFF_CAP = 30.0
STACK_LINES = 3  # lines of a dead worker's last words in the crash-loop line
# Planned recycles whose reason the successor counts (djserve_worker_restarts_total); SIGHUP's is not one.
RECYCLE_REASONS = frozenset({"max_requests", "max_memory", "max_lifetime"})


@dataclass(frozen=True)
class Limits:
    """Recycling limits (unset: none): a worker's unique memory, in bytes, and its lifetime, in seconds."""

    memory: int | None = None
    lifetime: float | None = None


class WorkerProcess(UvicornProcess):
    """A worker process, spawned, with the supervisor's record of it."""

    def __init__(self, config: Config, sockets: list[socket], reason: str | None = None) -> None:
        # uvicorn's __init__, with the process that `_new_process` makes; the whole object travels to a
        # spawned worker (see __getstate__), which keeps the writing end of the stack pipe.
        self.config = config
        self._server = None
        self.parent_conn, self.child_conn = Pipe()
        self.stacks, self.stack_writer = Pipe(duplex=False)
        self.reason = reason  # why the worker this one replaces ended
        self.started_at = time.monotonic()
        self.pinged_at: float | None = None  # an unanswered ping, sent then
        self.next_ping = 0.0
        self.stuck_at: float | None = None  # asked for its stack then
        self.killed = False
        self.stack = b""
        self.has_answered = False
        self.serving = False  # its server has started
        self.due: str | None = None  # why it is to be recycled
        self.retire_at: float | None = None  # its max_worker_lifetime ends then
        self.memory_strikes = 0  # reads of its memory above the limit in a row
        self.retry_at = 0.0  # a successor that failed is tried again from then
        self.successor: WorkerProcess | None = None
        self.replaces: WorkerProcess | None = None  # the worker this successor is to take the place of
        self.retired = False  # stopped by the supervisor once its successor served
        self.process: Any = self._new_process(sockets)

    def _new_process(self, sockets: list[socket]) -> Any:
        return get_subprocess(self.config, self.target, sockets)

    def __getstate__(self) -> dict[str, Any]:
        """What travels to a spawned worker: not the supervisor's own ends of the pipes, so that its death
        ends the worker's ping pipe (and stops the worker), nor the supervisor's records."""
        state = self.__dict__.copy()
        for name in ("parent_conn", "stacks", "process", "successor", "replaces"):
            state[name] = None
        return state

    # In the worker.

    def target(self, sockets: list[socket] | None = None) -> None:
        serve_worker(self.config, sockets or [], self.child_conn, self.stack_writer.fileno(), self.reason)

    # In the supervisor.

    def sentinel_fired(self) -> bool:
        """Its sentinel is readable: True once it has ended."""
        return True

    def send_ping(self, now: float) -> None:
        try:
            self.parent_conn.send(b"ping")
        except OSError:
            return  # gone: its sentinel says so
        self.pinged_at = now

    def answered(self, now: float) -> None:
        try:
            answer = self.parent_conn.recv()
        except (OSError, EOFError, pickle.UnpicklingError):
            return
        self.pinged_at = None
        self.has_answered = True
        # uvicorn's answer, whether it has started, or why it wants a successor (it has started then).
        self.serving = answer is not False
        self.next_ping = now + (PING_INTERVAL if self.serving else STARTING_PING)
        if isinstance(answer, str) and self.due is None:
            self.due = answer

    def allowance(self, timeout: float) -> float:
        return timeout if self.has_answered else max(timeout, STARTUP_ALLOWANCE)

    def ask_for_stack(self, now: float) -> None:
        self.stuck_at = now
        if self.pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, STACK_SIGNAL)

    def read_stack(self) -> None:
        with contextlib.suppress(OSError):
            while self.stacks.poll():
                chunk = os.read(self.stacks.fileno(), 65536)
                if not chunk:
                    break
                self.stack += chunk

    def terminate(self) -> None:
        """SIGTERM: it drains and stops. Its ping pipe stays open, or it would take the end for the
        supervisor's death; a worker not forked yet is told by that end instead."""
        if self.process.exitcode is None and self.pid is not None:
            self.process.terminate()
            logger.info("Terminated child process [%d]", self.pid)
        elif self.pid is None:
            self.parent_conn.close()

    def close(self) -> None:
        for connection in (self.parent_conn, self.child_conn, self.stacks, self.stack_writer):
            connection.close()


class ForkedWorker(WorkerProcess):
    """A worker forked by the preloaded process; its pid is known once it has written it."""

    def __init__(self, config: Config, sockets: list[socket], reason: str | None, preloader: forks.Preloader) -> None:
        self.preloader = preloader
        super().__init__(config, sockets, reason)

    def _new_process(self, sockets: list[socket]) -> forks.Forked:
        return forks.Forked(self.preloader, self.reason, [self.child_conn.fileno(), self.stack_writer.fileno()])

    def start(self) -> None:
        self.process.start()
        self.child_conn.close()  # the worker's ends now live in the worker (or in the request)
        self.stack_writer.close()

    def sentinel_fired(self) -> bool:
        ended: bool = self.process.lifeline()
        return ended

    def close(self) -> None:
        super().close()
        self.process.close()


def _backoff(young_deaths: int) -> float:
    """The delay before a restart after this many young deaths in a row: none after the first."""
    return 0.0 if young_deaths < 2 else min(BACKOFF_FIRST * 2.0 ** (young_deaths - 2), BACKOFF_CAP)


def _how(code: int | None) -> str:
    if code is None:
        return "its exit status is unknown"
    return f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit code {code}"


class Supervisor(Multiprocess):
    """uvicorn's supervisor (signals, SIGHUP restart, SIGTTIN/SIGTTOU), with djserve's workers and checks."""

    processes: list[WorkerProcess]  # type: ignore[assignment]

    def __init__(
        self, config: Config, sockets: list[socket], limits: Limits, preloader: forks.Preloader | None = None
    ) -> None:
        super().__init__(config, sockets)
        self.limits = limits
        self.preloader = preloader
        self.startup_failed = False
        self.scheduled: list[tuple[float, str | None]] = []  # starts put off by the crash-loop backoff
        self.young_deaths = 0
        self.memory_at = 0.0
        self.preloader_started_at = time.monotonic()
        self.preloader_restart_at: float | None = None
        self.preloader_deaths = 0
        # uvicorn's handlers queue the signals; this pipe also wakes the round's wait, so SIGTERM reaches
        # the workers at once rather than after the round.
        self.wakeup, wakeup_write = os.pipe()
        for fd in (self.wakeup, wakeup_write):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wakeup_write, warn_on_full_buffer=False)

    def spawn(self, reason: str | None = None) -> WorkerProcess:
        if self.preloader is not None:
            worker: WorkerProcess = ForkedWorker(self.config, self.sockets, reason, self.preloader)
        else:
            worker = WorkerProcess(self.config, self.sockets, reason)
        worker.start()
        if self.limits.lifetime is not None:
            worker.retire_at = worker.started_at + self.limits.lifetime * (1 - LIFETIME_JITTER * random.random())
        return worker

    def init_processes(self) -> None:
        self.processes = [self.spawn() for _ in range(self.processes_num)]

    def run(self) -> None:
        logger.info("Started parent process [%d]", os.getpid())
        if self.preloader is not None:
            self.start_preloading()
        self.init_processes()
        while not self.should_exit.is_set():
            self.keep_subprocess_alive()
            self.handle_signals()
        self.terminate_all()
        self.join_all()
        if self.preloader is not None:
            self.preloader.close()
            if self.preloader.pid is not None:
                self.preloader.exit_code(self.preloader.pid)
        logger.info("Stopping parent process [%d]", os.getpid())
        if self.startup_failed:
            sys.exit(STARTUP_FAILURE)

    # The preloaded process.

    def start_preloading(self) -> None:
        assert self.preloader is not None
        refused = self.preloader.begin()
        if refused:
            logger.warning(
                "preload is off: the app runs threads once imported (%s), and forking a process with threads "
                "is unsafe, so each worker imports the app itself. To keep preload, start them on first use "
                "rather than at import, or set preload = false.",
                ", ".join(refused),
            )
            self.preloader.close()
            if self.preloader.pid is not None:
                self.preloader.exit_code(self.preloader.pid)
            self.preloader = None
            return
        if not forks.become_subreaper():
            logger.warning("cannot adopt orphaned workers (PR_SET_CHILD_SUBREAPER failed): exit codes may be lost")

    def tend_preloader(self, now: float) -> None:
        """Restart the preloaded process when it has died, later and later if it dies young again and again."""
        preloader = self.preloader
        if preloader is None or self.should_exit.is_set():
            return
        preloader.reap()  # and any orphan that became ours
        if preloader.control is None and self.preloader_restart_at is None:
            code = preloader.exit_code(preloader.pid) if preloader.pid is not None else None
            young = now - self.preloader_started_at < CRASH_WINDOW
            self.preloader_deaths = self.preloader_deaths + 1 if young else 1
            delay = _backoff(self.preloader_deaths)
            logger.error(
                "Preloaded process [%s] ended: %s; the workers serve on, and a new one starts in %.1fs",
                preloader.pid,
                _how(code),
                delay,
            )
            self.preloader_restart_at = now + delay
        if self.preloader_restart_at is not None and now >= self.preloader_restart_at:
            self.preloader_restart_at = None
            self.preloader_started_at = now
            preloader.restart()
            logger.info("Started preloaded process [%d]", preloader.pid)

    # One round.

    def keep_subprocess_alive(self) -> None:
        """One round: ping who is due, wait for answers, exits and stacks together, then act on them."""
        now = time.monotonic()
        self.tend_preloader(now)
        self.start_scheduled(now)
        self.plan_recycles(now)
        waiting: dict[Any, tuple[str, WorkerProcess | None]] = {self.wakeup: ("signal", None)}
        if self.preloader is not None and self.preloader.control is not None:
            waiting[self.preloader.control] = ("preloader", None)
        wake = min([now + PING_INTERVAL, *(at for at, _ in self.scheduled)])
        if self.preloader_restart_at is not None:
            wake = min(wake, self.preloader_restart_at)
        for worker in self.processes:
            waiting[worker.process.sentinel] = ("exit", worker)
            if worker.killed or worker.pid is None:
                continue
            if worker.stuck_at is not None:
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
        for ready in wait(list(waiting), timeout=max(0.0, wake - now)):
            self.on_event(*waiting[ready])
        self.check_timeouts(time.monotonic())
        metrics_dir.flush()

    def on_event(self, event: str, whose: WorkerProcess | None) -> None:
        if event == "signal":
            with contextlib.suppress(BlockingIOError):
                os.read(self.wakeup, 512)  # the queued signals are handled after this round
        elif event == "preloader":
            if self.preloader is not None and self.preloader.control is not None:
                self.preloader.readable()
        elif whose is None or whose not in self.processes:
            return  # it ended earlier in this round
        elif event == "exit":
            if whose.sentinel_fired():
                self.replace(whose)
        elif event == "answer":
            whose.answered(time.monotonic())
            if whose.serving and whose.replaces is not None:
                self.retire(whose.replaces, whose)
        else:
            whose.read_stack()

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
                worker.stack = b""
                worker.killed = True
                worker.process.kill()  # its sentinel brings the replacement in the next round

    # Exits and replacements.

    def replace(self, worker: WorkerProcess) -> None:
        """A worker exited: reap it and, unless the app cannot start or we are stopping, start another."""
        worker.process.join()
        worker.read_stack()
        worker.close()
        self.processes.remove(worker)
        self.on_worker_exit(worker)
        planned = worker.retired or worker.successor is not None
        if worker.exitcode == STARTUP_FAILURE and not worker.killed and not planned:
            # It failed before serving: the app would fail the same way in every new worker.
            logger.error("Child process [%d] failed to start, stopping the parent process.", worker.pid)
            self.startup_failed = True
            self.should_exit.set()
        if self.should_exit.is_set() or worker.retired:
            return
        now = time.monotonic()
        if worker.successor is not None:  # it ended while its successor started: that one takes its place
            worker.successor.replaces = None
            return
        delay = self.backoff(worker, now)
        if worker.replaces is not None:  # a successor that failed: the worker it was for serves on
            worker.replaces.successor = None
            worker.replaces.retry_at = now + delay
            return
        if worker.pid is None:  # a fork that was never made (its preloaded process died first): ask again
            reason = worker.reason
        else:
            reason = "stuck" if worker.killed else "killed" if (worker.exitcode or 0) < 0 else "exited"
        if delay:
            self.scheduled.append((now + delay, reason))
        else:
            self.processes.append(self.spawn(reason))

    def backoff(self, worker: WorkerProcess, now: float) -> float:
        """Seconds to wait before its replacement: none unless workers die young again and again."""
        if now - worker.started_at >= CRASH_WINDOW:
            self.young_deaths = 0
            return 0.0
        self.young_deaths += 1
        delay = _backoff(self.young_deaths)
        if not delay:
            return 0.0
        words = worker.stack.decode(errors="replace").strip().splitlines()[-STACK_LINES:]
        logger.error(
            "workers keep dying within %gs of starting (the last: %s%s); the next starts in %.1fs",
            CRASH_WINDOW,
            _how(worker.exitcode),
            f", ending: {' | '.join(line.strip() for line in words)}" if words else "",
            delay,
        )
        return delay

    def start_scheduled(self, now: float) -> None:
        if self.should_exit.is_set():
            return
        for entry in [entry for entry in self.scheduled if entry[0] <= now]:
            self.scheduled.remove(entry)
            self.processes.append(self.spawn(entry[1]))

    def on_worker_exit(self, worker: WorkerProcess) -> None:
        """Called once for every worker that ended, however it ended, after it is reaped."""
        if worker.pid is None:
            logger.info("A worker asked of the preloaded process was lost with it")
            return
        code = worker.exitcode
        if code is not None and code < 0 and worker.stack and not worker.killed:
            # A fatal signal's stack (faulthandler writes it into the stack pipe, not on stderr).
            logger.error(
                "Child process [%d] ended: %s\n%s", worker.pid, _how(code), worker.stack.decode(errors="replace")
            )
        elif worker.retired and code == -signal.SIGTERM:
            # uvicorn raises the SIGTERM it caught again once it has drained: a recycle, not a kill.
            logger.info("Child process [%d] ended: recycled", worker.pid)
        else:
            logger.info("Child process [%d] ended: %s", worker.pid, _how(code))
        metrics_dir.worker_exited(worker.pid)

    # Planned recycles.

    def plan_recycles(self, now: float) -> None:
        """Mark the workers over a limit; start one successor, for the first worker due."""
        if self.should_exit.is_set():
            return
        serving = [
            w for w in self.processes if w.serving and not w.retired and w.successor is None and w.replaces is None
        ]
        if self.limits.memory is not None and now >= self.memory_at:
            self.memory_at = now + MEMORY_EVERY
            for worker in serving:
                used = memory.usage(worker.pid) if worker.pid is not None else None
                worker.memory_strikes = worker.memory_strikes + 1 if used and used.uss > self.limits.memory else 0
                if worker.memory_strikes >= 2 and worker.due is None:
                    assert used is not None
                    worker.due = "max_memory"
                    logger.info(
                        "Child process [%d] uses %d MiB of its own, above max_worker_memory (%d MiB)",
                        worker.pid,
                        used.uss >> 20,
                        self.limits.memory >> 20,
                    )
        for worker in serving:
            if worker.due is None and worker.retire_at is not None and now >= worker.retire_at:
                worker.due = "max_lifetime"
        if any(w.replaces is not None for w in self.processes):
            return  # one successor at a time
        for worker in serving:
            if worker.due is not None and now >= worker.retry_at:
                successor = self.spawn(worker.due if worker.due in RECYCLE_REASONS else None)
                successor.replaces, worker.successor = worker, successor
                self.processes.append(successor)
                logger.info("Recycling child process [%d] (%s): its successor first", worker.pid, worker.due)
                return

    def retire(self, old: WorkerProcess, successor: WorkerProcess) -> None:
        """The successor serves: the old worker stops listening, drains and exits."""
        successor.replaces, old.successor = None, None
        old.retired = True
        old.terminate()

    # Signals and the end.

    def restart_all(self) -> None:
        """SIGHUP: every worker recycled, each successor serving before the worker it replaces stops."""
        for worker in self.processes:
            if not worker.retired and worker.replaces is None:
                worker.due = worker.due or "restart"

    def handle_ttin(self) -> None:
        logger.info("Received SIGTTIN, increasing the number of processes.")
        self.processes_num += 1
        self.processes.append(self.spawn())

    def handle_ttou(self) -> None:
        logger.info("Received SIGTTOU, decreasing number of processes.")
        if self.processes_num <= 1:
            logger.info("Already reached one process, cannot decrease the number of processes anymore.")
            return
        self.processes_num -= 1
        if self.scheduled:
            self.scheduled.pop()
            return
        worker = next((w for w in reversed(self.processes) if not w.retired and w.replaces is None), None)
        if worker is None:
            return
        if worker.successor is not None:  # its successor serves on in its place
            worker.successor.replaces, worker.successor = None, None
        worker.retired = True
        worker.terminate()

    def terminate_all(self) -> None:
        self.scheduled.clear()
        if self.preloader is not None:
            self.preloader.abandon_requests()
        for worker in self.processes:
            worker.terminate()

    def join_all(self) -> None:
        for worker in self.processes:
            worker.join()
            worker.read_stack()
            self.on_worker_exit(worker)
            worker.close()
