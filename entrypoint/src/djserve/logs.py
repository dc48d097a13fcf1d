"""Logging: uvicorn's own text format, or one JSON object per line for every logger.

JSON mode is a uvicorn log config file (``logs.json``), so ``djserve command`` can hand the very same
configuration to a plain ``uvicorn --log-config`` and each worker process loads it the uvicorn way.
Every logger propagates to the root's one JSON handler; djserve adds no handler to, and removes none
from, Django's loggers. Django's own ``console`` handler on the ``django`` logger only writes with
``DEBUG = True`` (its ``require_debug_true`` filter), so in production each record is written once; with
``DEBUG = True`` Django's plain-text copy appears beside the JSON line, as in development.

In JSON mode uvicorn's access logger is silent: its record has no duration, so ``djserve.metrics`` writes
the access line (``djserve.access``) instead, when the access log is on.
"""

from __future__ import annotations

import json
import logging
import logging.config
from importlib.resources import files
from pathlib import Path
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

JSON_CONFIG = str(files("djserve").joinpath("logs.json"))
FIELDS = {"levelname": "level", "name": "logger", "process": "pid", "exc_info": "exception"}


class JsonFormatter(BaseJsonFormatter):
    """``time``, ``level``, ``logger``, ``message`` and ``pid`` on every line, and every ``extra`` field.

    Extra values that are not JSON (Django's ``request``) are written as their ``str()``.
    """

    def __init__(self) -> None:
        super().__init__(
            "%(levelname)s %(name)s %(message)s %(process)d",
            rename_fields=FIELDS,
            timestamp="time",
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],  # uvicorn's ANSI-coloured copy of the message
        )

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        log_data["level"] = str(log_data["level"]).lower()
        return log_data


def configure(log_format: str) -> None:
    """Logging for djserve's own steps before uvicorn configures it again for serving."""
    if log_format == "json":
        with Path(JSON_CONFIG).open() as file:
            logging.config.dictConfig(json.load(file))
    else:
        logging.basicConfig(format="%(levelname)s:     %(message)s", level=logging.INFO)
