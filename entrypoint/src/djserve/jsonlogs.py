"""The JSON formatter of ``logs.json``: imported by logging's configuration in JSON mode only, so that
text mode, the default, starts without python-json-logger (30 ms of imports, bench/findings.md)."""

from __future__ import annotations

from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter as BaseJsonFormatter

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
