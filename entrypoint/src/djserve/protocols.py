"""Stable public names of djserve's HTTP protocols, as ``djserve command`` prints them in ``--http``."""

from djserve.serve.protocols import H11Protocol, HttpToolsProtocol

__all__ = ["H11Protocol", "HttpToolsProtocol"]
