"""The serving process's hand-off to its workers: one dataclass writes the environment and reads it back."""

from __future__ import annotations

import dataclasses

import pytest

from djserve.config.options import REGISTRY
from djserve.handoff import WorkerConfig

# Not a setting: resolved from Django's settings for hybrid (WSGI_APPLICATION, or the project's wsgi.py).
DERIVED = {"wsgi_app"}


def test_every_field_is_a_setting_with_the_same_default() -> None:
    """A worker without djserve's variables (a plain uvicorn line) behaves as the declared defaults say."""
    for field in dataclasses.fields(WorkerConfig):
        if field.name in DERIVED:
            continue
        assert field.name in REGISTRY, field.name
        expected = REGISTRY[field.name].default
        assert getattr(WorkerConfig(), field.name) == expected, field.name


def test_what_the_serving_process_writes_a_worker_reads_back() -> None:
    given = WorkerConfig(
        app="mysite.asgi:application",
        interface="hybrid",
        wsgi_app="mysite.wsgi:application",
        threads=3,
        header_timeout=2.5,
        serve_static=True,
        metrics=False,
        access_log=False,
        factory=True,
    )
    environ = given.to_environ()
    assert WorkerConfig.from_environ(environ) == given
    # The names djserve command has always printed: lines users pasted keep working.
    assert environ["DJSERVE_APP"] == "mysite.asgi:application"
    assert environ["UVICORN_ACCESS_LOG"] == "false"
    assert environ["UVICORN_FACTORY"] == "true"


def test_a_worker_without_the_variables_gets_the_defaults() -> None:
    assert WorkerConfig.from_environ({}) == WorkerConfig()
    assert "DJSERVE_APP" not in WorkerConfig().to_environ()  # None is left out, and reads back as None


def test_a_malformed_variable_names_itself() -> None:
    with pytest.raises(ValueError, match="DJSERVE_SERVE_STATIC='maybe' is not a boolean"):
        WorkerConfig.from_environ({"DJSERVE_SERVE_STATIC": "maybe"})
