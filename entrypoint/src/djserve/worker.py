"""Stable public name of the workers' app factory, printed by ``djserve command``: ``djserve.worker:create``."""

from djserve.app.factory import create

__all__ = ["create"]
