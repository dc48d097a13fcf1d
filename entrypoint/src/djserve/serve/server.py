"""djserve's uvicorn ``Server``: it drains before uvicorn's shutdown, and its event loop answers the pings.

uvicorn's worker answers its supervisor's ping from a side thread, so a worker whose event loop is
blocked (an async view calling ``time.sleep``) still looks healthy and never recovers. Here the thread
only answers while the app loads, when the loop is not serving yet; from startup on the loop itself
answers, so a ping that goes unanswered means the loop is stuck (see ``djserve.serve.supervisor``).

It relies on uvicorn 0.54's ``Server`` internals: ``serve`` loads the app inside the running loop before
``startup``, ``startup`` sets ``started``, and the supervisor's ping protocol (one message, answered with
``started``); the pin in pyproject.toml is for them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from multiprocessing.connection import Connection

from uvicorn.config import Config
from uvicorn.server import Server as UvicornServer

from djserve.serve.draining import drain


class Server(UvicornServer):
    def __init__(self, config: Config, pings: Connection | None = None) -> None:
        super().__init__(config)
        self.pings = pings
        self._loading = threading.Event()
        self._loader_answers: threading.Thread | None = None

    def _pong(self) -> bool:
        """One ping, one answer: whether startup has finished (uvicorn's protocol). False: no supervisor."""
        assert self.pings is not None
        try:
            self.pings.recv()
            self.pings.send(self.started)
        except (OSError, EOFError):
            return False
        return True

    def _answer_while_loading(self) -> None:
        assert self.pings is not None
        while self._loading.is_set():
            if self.pings.poll(0.05) and not self._pong():
                return

    def _answer_from_the_loop(self) -> None:
        if not self._pong():
            assert self.pings is not None
            asyncio.get_running_loop().remove_reader(self.pings.fileno())

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        if self.pings is not None:
            self._loading.set()
            self._loader_answers = threading.Thread(target=self._answer_while_loading, daemon=True)
            self._loader_answers.start()
        await super().serve(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self._loader_answers is not None and self.pings is not None:
            # Hand the pipe over: the thread stops reading before the loop starts to.
            self._loading.clear()
            self._loader_answers.join()
            asyncio.get_running_loop().add_reader(self.pings.fileno(), self._answer_from_the_loop)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await drain(self)
        await super().shutdown(sockets)
