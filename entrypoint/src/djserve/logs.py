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


def quiet_django_console() -> None:
    """Drop Django's own console handlers (DEBUG only): the root JSON handler already writes its records."""
    for name in ("django", "django.server"):
        logger = logging.getLogger(name)
        for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
            logger.removeHandler(handler)


def configure(log_format: str) -> None:
    """Logging for djserve's own steps before uvicorn configures it again for serving."""
    if log_format == "json":
        with Path(JSON_CONFIG).open() as file:
            logging.config.dictConfig(json.load(file))
    else:
        logging.basicConfig(format="%(levelname)s:     %(message)s", level=logging.INFO)
