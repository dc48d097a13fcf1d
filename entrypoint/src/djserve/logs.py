"""Logging: uvicorn's own text format, or one JSON object per line for every logger.

JSON mode is a uvicorn log config file (``logs.json``), so ``djserve command`` can hand the very same
configuration to a plain ``uvicorn --log-config`` and each worker process loads it the uvicorn way.
"""

from __future__ import annotations

import json
import logging
import logging.config
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

JSON_CONFIG = str(files("djserve").joinpath("logs.json"))
# uvicorn.access records carry these positional args.
ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            entry.update(zip(ACCESS_FIELDS, record.args, strict=True))
        entry["message"] = record.getMessage()
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


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


def quiet_django_console() -> None:
    """Drop Django's own console handler (DEBUG only): djserve's root handler already writes its records."""
    from django.utils.log import RequireDebugTrue

    logger = logging.getLogger("django")
    for handler in [h for h in logger.handlers if any(isinstance(f, RequireDebugTrue) for f in h.filters)]:
        logger.removeHandler(handler)


def for_worker(log_format: str) -> None:
    """In every worker once Django is set up: each of Django's records written once, by djserve's handler."""
    quiet_django_console()
    root = logging.getLogger()
    if log_format == "text" and not root.handlers:
        root.addHandler(text_handler())


def configure(log_format: str) -> None:
    """Logging for djserve's own steps before uvicorn configures it again for serving."""
    if log_format == "json":
        with Path(JSON_CONFIG).open() as file:
            logging.config.dictConfig(json.load(file))
    else:
        logging.basicConfig(handlers=[text_handler()], level=logging.INFO)
