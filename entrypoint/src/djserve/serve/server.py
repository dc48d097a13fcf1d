"""djserve's uvicorn ``Server``: it drains before uvicorn's shutdown, and its event loop answers the pings.

uvicorn's worker answers its supervisor's ping from a side thread, so a worker whose event loop is
blocked (an async view calling ``time.sleep``) still looks healthy and never recovers. Here the thread
only answers while the app loads, when the loop is not serving yet; from startup on the loop itself
answers, so a ping that goes unanswered means the loop is stuck (see ``djserve.serve.supervisor``).

The answer is uvicorn's (whether startup has finished), or, once the worker wants to be replaced, why
(``max_requests``): the supervisor then starts its successor and stops this worker only once the
successor answers, so a recycle never leaves fewer workers serving. The end of the ping pipe means the
supervisor is gone, killed with no chance to stop its workers: the worker then stops, so that none is
left serving unsupervised.

It relies on uvicorn 0.54's ``Server`` internals: ``serve`` loads the app inside the running loop before
``startup``, ``startup`` sets ``started``, ``limit_max_requests`` is a ``cached_property`` that ``on_tick``
reads, and the supervisor's ping protocol (one message, answered with ``started``); the pin in
pyproject.toml is for them.
"""

from __future__ import annotations

import asyncio
import faulthandler
import logging
import os
import signal
import socket
import threading
import traceback
from multiprocessing.connection import Connection, wait

from uvicorn.config import Config
from uvicorn.server import Server as UvicornServer

from djserve.app import state
from djserve.serve.draining import drain

logger = logging.getLogger("uvicorn.error")

STACK_SIGNAL = signal.SIGUSR1  # the supervisor asks a stuck worker for the stack of every thread
STACK_TAIL = 20  # lines of a fatal error's traceback handed to the supervisor, for its crash-loop line


class Server(UvicornServer):
    def __init__(self, config: Config, pings: Connection | None = None) -> None:
        super().__init__(config)
        self.pings = pings
        self.due: str | None = None  # why this worker asks to be replaced
        self.recycle_after: int | None = None
        self._loader_answers: threading.Thread | None = None
        # Written once loaded: it wakes the thread at once, where a poll's timeout cost 25 ms a start.
        self._loaded = (-1, -1)

    def _pong(self) -> bool:
        """One ping, one answer: whether startup has finished (uvicorn's protocol), or why this worker is due.
        False: no supervisor any more."""
        assert self.pings is not None
        try:
            self.pings.recv()
            self.pings.send(self.due or self.started)
        except (OSError, EOFError):
            return False
        return True

    def _answer_while_loading(self) -> None:
        assert self.pings is not None
        loaded = self._loaded[0]
        # A ping that comes with the end of loading stays in the pipe, for the loop to answer.
        while loaded not in wait([self.pings, loaded]) and self._pong():
            pass

    def _answer_from_the_loop(self) -> None:
        if not self._pong():
            assert self.pings is not None
            asyncio.get_running_loop().remove_reader(self.pings.fileno())
            logger.warning("the supervisor is gone: stopping")
            self.should_exit = True

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.pings is not None:
            self._loaded = os.pipe()
            self._loader_answers = threading.Thread(target=self._answer_while_loading, daemon=True)
            self._loader_answers.start()
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._loader_answers is not None and self.pings is not None:
            # Hand the pipe over: the thread stops reading before the loop starts to.
            os.write(self._loaded[1], b"\0")
            self._loader_answers.join()
            for fd in self._loaded:
                os.close(fd)
            asyncio.get_running_loop().add_reader(self.pings.fileno(), self._answer_from_the_loop)
            # At its request limit (uvicorn's, jitter included) a supervised worker asks for a successor and
            # serves on until the supervisor stops it; uvicorn's own check, which would stop it at once, is off.
            self.recycle_after = self.limit_max_requests
            self.__dict__["limit_max_requests"] = None

    async def on_tick(self, counter: int) -> bool:
        if self.due is None and self.recycle_after and self.server_state.total_requests >= self.recycle_after:
            self.due = "max_requests"
            logger.info("Maximum request limit of %d reached; replaced once a successor serves.", self.recycle_after)
        return await super().on_tick(counter)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await drain(self)
        await super().shutdown(sockets)
        for stopped in state.at_stop:
            stopped()


def serve_worker(
    config: Config, sockets: list[socket.socket], pings: Connection, stacks: int, reason: str | None
) -> None:
    """A worker's life, spawned or forked: serve until stopped.

    ``stacks`` is the supervisor's pipe for stacks: every thread's when it asks (a stuck event loop), the
    stack of a fatal signal (SIGSEGV, SIGBUS), and the end of the traceback of an error that ends the
    worker, for the line it logs about a crash loop. ``reason``: why the worker this one replaces ended.
    """
    state.restart_reason = reason
    os.set_blocking(stacks, False)  # a full pipe truncates a stack rather than hang a dying worker
    faulthandler.register(STACK_SIGNAL, file=stacks, all_threads=True)
    faulthandler.enable(file=stacks)
    try:
        Server(config, pings=pings).run(sockets)
    except Exception:
        tail = "".join(traceback.format_exc().splitlines(keepends=True)[-STACK_TAIL:])
        os.write(stacks, tail.encode(errors="replace"))
        raise
