"""djserve's httptools protocol: uvicorn's, with the deadline, limits and refusals of ``djserve.serve.protocols``."""

from __future__ import annotations

from array import array
from http import HTTPStatus

import httptools
from uvicorn.protocols.http import httptools_impl

from djserve.serve.protocols import Guard, Refused, bad_request


class _Parser(httptools.HttpRequestParser):
    """httptools' parser, raising djserve's refusals as they are.

    httptools reports an exception raised in a callback as a parser error; and uvicorn answers a
    parser error with its own 400 even when the app already has the request, so an error in the
    body is refused here, like one that the limits find.
    """

    def __init__(self, protocol: Guard) -> None:
        super().__init__(protocol)
        self.protocol = protocol

    def feed_data(self, data: bytes | bytearray | memoryview | array[int]) -> None:
        try:
            super().feed_data(data)
        except httptools.HttpParserError as error:
            if isinstance(error.__context__, Refused):
                raise error.__context__ from None
            if self.protocol.head_pending:
                raise
            raise bad_request(f"malformed body ({error})") from None


class HttpToolsProtocol(Guard, httptools_impl.HttpToolsProtocol):
    def _own_parser(self) -> None:
        self.parser = _Parser(self)
        # As uvicorn sets it on its own parser: answer the first of pipelined requests after a close.
        self.parser.set_dangerous_leniencies(lenient_data_after_close=True)

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self.head_pending:
            return  # a trailer field: never merged into the headers the app reads (RFC 9110 6.5.1)
        if len(self.headers) >= self.limits.max_headers:
            raise Refused(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "more header fields than max_headers")
        # llhttp keeps the whitespace after a value; it is not part of it (RFC 9112 5.1), as with h11.
        super().on_header(name, value.strip(b" \t"))

    def on_headers_complete(self) -> None:
        self.url = self._head_complete(self.parser.get_method(), self.url, self.parser.get_http_version(), self.headers)
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        self._body_received(len(body))
        super().on_body(body)

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._response_complete()
