"""Stable public names of djserve's HTTP protocols, as ``djserve command`` prints them in ``--http``.

Each is imported when it is asked for, so that a worker loads only the parser it serves with.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from djserve.serve.h11_protocol import H11Protocol
    from djserve.serve.httptools_protocol import HttpToolsProtocol

__all__ = ["H11Protocol", "HttpToolsProtocol"]
_MODULES = {"HttpToolsProtocol": "djserve.serve.httptools_protocol", "H11Protocol": "djserve.serve.h11_protocol"}


def __getattr__(name: str) -> type:
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    protocol: type = getattr(import_module(_MODULES[name]), name)
    return protocol
