"""djserve's h11 protocol: uvicorn's, with the deadline, limits and refusals of ``djserve.serve.protocols``."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any

import h11
from uvicorn.protocols.http import h11_impl

from djserve.serve.protocols import Guard, Refused


class _Connection(h11.Connection):
    """h11's connection, reporting each event from the client to the protocol before uvicorn sees it.

    uvicorn answers h11's protocol errors with its own 400 even when the app already has the request
    (then the app's response fails, and the client got 500), so an error in the body is refused here.
    """

    def __init__(self, protocol: H11Protocol, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        self.protocol = protocol

    def next_event(self) -> Any:
        try:
            event = super().next_event()
        except h11.RemoteProtocolError as error:
            if self.protocol.head_pending:
                raise
            raise Refused(HTTPStatus(error.error_status_hint), f"malformed body ({error})") from None
        return self.protocol.inspect(event)


class H11Protocol(Guard, h11_impl.H11Protocol):
    def _own_parser(self) -> None:
        # h11 buffers an incomplete head (or chunk header, or trailers) up to this size itself.
        self.conn = _Connection(self, self.limits.max_header_bytes)

    def inspect(self, event: Any) -> Any:
        """Check an event from the client; returns the event uvicorn is to see."""
        if isinstance(event, h11.Request):
            headers = list(event.headers)
            version = event.http_version.decode()
            target = self._head_complete(event.method, event.target, version, headers)
            if target != event.target:
                # The absolute form: uvicorn serves the target as it is, so it gets the origin form.
                return h11.Request(method=event.method, target=target, headers=headers, http_version=version)
        elif isinstance(event, h11.Data):
            self._body_received(len(event.data))
        elif isinstance(event, h11.EndOfMessage):
            self._message_complete()
        return event

    def handle_events(self) -> None:
        # Also run after a response completes, for pipelined requests: a refusal is answered here too.
        try:
            super().handle_events()
        except Refused as refusal:
            self._refuse(refusal)

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._response_complete()
