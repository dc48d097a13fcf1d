"""JSON logs users can ship: one object per line, with the fields log pipelines index on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import get

QUIET_PRODUCTION = """
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1"]
"""
# A user's own plain stream handler on the `django` logger: the kind djserve once removed.
USER_HANDLER = """
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"audit": {"class": "logging.StreamHandler", "stream": open(%r, "a")}},
    "loggers": {"django": {"handlers": ["audit"], "level": "WARNING"}},
}
"""


def add_settings(site: Path, text: str) -> None:
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + text)


@pytest.fixture
def production(site: Path) -> Path:
    """DEBUG off, as in production: Django's console handler (DEBUG-only) then writes nothing."""
    add_settings(site, QUIET_PRODUCTION)
    return site


def entries(err: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in err.splitlines()]


def test_every_line_names_time_level_logger_message_and_pid(production: Path, serve: Any) -> None:
    server = serve("--access-log", "--workers", "2", DJSERVE_LOG_FORMAT="json")
    get(server.url("/missing"))
    _, err = server.stop()
    lines = entries(err)
    for entry in lines:
        assert {"time", "level", "logger", "message", "pid"} <= entry.keys(), entry
        assert entry["level"] in {"debug", "info", "warning", "error", "critical"}
    pids = {entry["pid"] for entry in lines}
    assert server.process.pid in pids and len(pids) == 3  # the supervisor and both workers


def test_access_lines_carry_the_request_and_its_duration(production: Path, serve: Any) -> None:
    server = serve("--access-log", DJSERVE_LOG_FORMAT="json")
    get(server.url("/missing?token=abc"))
    _, err = server.stop()
    (access,) = [e for e in entries(err) if e["logger"] == "djserve.access"]
    assert (access["method"], access["path"], access["status"]) == ("GET", "/missing", 404)
    assert isinstance(access["duration_ms"], float) and 0 < access["duration_ms"] < 30_000
    assert access["client"].startswith("127.0.0.1:")
    assert "token" not in json.dumps(access)  # the query string is left out


def test_no_access_lines_when_the_access_log_is_off(production: Path, serve: Any) -> None:
    server = serve("--no-access-log", DJSERVE_LOG_FORMAT="json")
    get(server.url("/missing"))
    _, err = server.stop()
    assert not [e for e in entries(err) if "access" in e["logger"]]


def test_django_extra_fields_are_kept(production: Path, serve: Any) -> None:
    server = serve(DJSERVE_LOG_FORMAT="json")
    get(server.url("/missing"))
    _, err = server.stop()
    (record,) = [e for e in entries(err) if e["logger"] == "django.request"]
    assert record["status_code"] == 404 and record["message"] == "Not Found: /missing"
    assert "/missing" in record["request"]  # Django's request object, written as its str()


def test_a_users_handler_on_django_survives_and_nothing_is_written_twice(
    production: Path, tmp_path: Path, serve: Any
) -> None:
    audit = tmp_path / "audit.log"
    add_settings(production, USER_HANDLER % str(audit))
    server = serve(DJSERVE_LOG_FORMAT="json")
    get(server.url("/missing"))
    _, err = server.stop()
    assert audit.read_text() == "Not Found: /missing\n"
    assert err.count("Not Found: /missing") == 1, err  # the JSON line only: Django's console is DEBUG-only
    assert all(line.startswith("{") for line in err.splitlines())
