"""Logging: uvicorn's own text format, or one JSON object per line for every logger.

JSON mode is a uvicorn log config file (``logs.json``, its formatter in ``djserve.jsonlogs``), so
``djserve command`` can hand the very same configuration to a plain ``uvicorn --log-config`` and each
worker process loads it the uvicorn way.
Every logger propagates to the root's one JSON handler; djserve adds no handler to, and removes none
from, Django's loggers. Django's own ``console`` handler on the ``django`` logger only writes with
``DEBUG = True`` (its ``require_debug_true`` filter), so in production each record is written once; with
``DEBUG = True`` Django's plain-text copy appears beside the JSON line, as in development.

In JSON mode uvicorn's access logger is silent: its record has no duration, so ``djserve.app.observe`` writes
the access line (``djserve.access``) instead, when the access log is on.

In text mode djserve's own handler on the root logger writes the records of every logger that uvicorn's
configuration leaves alone, Django's included, in uvicorn's format. In both modes djserve's handler
writes a client's error as one line (``ClientErrors``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

# Beside this module, read from the file system: importlib.resources would cost every process's start
# 40 ms of imports (bench/findings.md).
JSON_CONFIG = str(Path(__file__).with_name("logs.json"))


class ClientErrors(logging.Filter):
    """Writes a record about a client's error as one line, without the traceback.

    Django logs a refused request with its exception: a bad Host header (``DisallowedHost``) through
    ``django.security.*`` at ERROR, other 4xx through ``django.request``. Both set the response's
    ``status_code`` on the record. A 4xx traceback shows Django refusing the request, not a bug, and
    a hostile client would otherwise write twenty lines per request. djserve's handler is on the root
    logger, which handles a record last, so handlers of the user's that see it first keep the traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if record.exc_info and isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True


def text_handler() -> logging.Handler:
    """djserve's handler for text logs: uvicorn's format, on stderr."""
    from uvicorn.logging import DefaultFormatter

    handler = logging.StreamHandler()
    handler.setFormatter(DefaultFormatter("%(levelprefix)s %(message)s"))
    handler.addFilter(ClientErrors())
    return handler


def for_worker(log_format: str) -> None:
    """In every worker, text mode: djserve's root handler, unless the root logger already has one.

    uvicorn's text configuration gives only its own loggers handlers; without one on the root, a
    worker's Django records reached Python's last-resort handler, traceback and all.
    """
    root = logging.getLogger()
    if log_format == "text" and not root.handlers:
        root.addHandler(text_handler())


def configure(log_format: str) -> None:
    """Logging for djserve's own steps before uvicorn configures it again for serving."""
    if log_format == "json":
        from logging.config import dictConfig

        with Path(JSON_CONFIG).open() as file:
            dictConfig(json.load(file))
    else:
        logging.basicConfig(handlers=[text_handler()], level=logging.INFO)
