"""What crosses from one djserve process to the next, each as one dataclass.

- ``Launch``: the validating child's result, pickled to the serving process, which imports neither
  Django nor the configuration machinery.
- ``WorkerConfig``: the serving process's settings for every worker. uvicorn starts workers in fresh
  interpreters, so it travels in the environment: ``to_environ`` writes it and ``from_environ`` reads
  it back, one variable per field. ``djserve command`` prints the same variables, so the plain uvicorn
  line it prints starts the same workers; a variable that is missing reads as the field's default,
  which is the setting's declared default, so ``uvicorn --http djserve.protocols:HttpToolsProtocol``
  without djserve serves as documented.

Standard library only: the workers and the healthcheck import it before anything else.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, get_type_hints

from djserve import defaults

TRUE = frozenset({"true", "1", "yes", "on"})
FALSE = frozenset({"false", "0", "no", "off", ""})


def _env(var: str) -> dict[str, str]:
    return {"env": var}


@dataclass(frozen=True)
class WorkerConfig:
    """Each field is a setting of the same name (``djserve.config.options``), under ``DJSERVE_<NAME>``
    unless its metadata names another variable (the names ``djserve command`` has always printed)."""

    app: str | None = None  # the ASGI app, or the WSGI app for interface wsgi
    interface: str = "asgi"  # asgi, wsgi or hybrid: what the workers serve (auto is resolved before)
    wsgi_app: str | None = None  # hybrid's WSGI side, which serves sync views
    preset: str = "default"
    health_path: str = defaults.HEALTH_PATH
    ready_path: str = defaults.READY_PATH
    threads: int = defaults.THREADS
    header_timeout: float = defaults.HEADER_TIMEOUT
    max_header_bytes: int = defaults.MAX_HEADER_BYTES
    max_headers: int = defaults.MAX_HEADERS
    max_body_bytes: int = defaults.MAX_BODY_BYTES
    ws_max_connections: int = defaults.WS_MAX_CONNECTIONS
    log_format: str = "text"
    serve_static: bool = False
    metrics: bool = True
    metrics_path: str = defaults.METRICS_PATH
    access_log: bool = field(default=True, metadata=_env("UVICORN_ACCESS_LOG"))
    factory: bool = field(default=False, metadata=_env("UVICORN_FACTORY"))

    @staticmethod
    def variable(name: str) -> str:
        return str(_fields()[name].metadata.get("env", f"DJSERVE_{name.upper()}"))

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Every field's variable, by field name."""
        return {name: cls.variable(name) for name in _fields()}

    @classmethod
    def from_values(cls, values: Mapping[str, Any]) -> WorkerConfig:
        """From resolved settings by name; names that are not fields are ignored."""
        return cls(**{name: values[name] for name in _fields() if name in values})

    def to_environ(self) -> dict[str, str]:
        """The variables for a worker's environment; a None field is left out, and so reads as None."""
        env = {}
        for name in _fields():
            value = getattr(self, name)
            if value is not None:
                env[self.variable(name)] = ("true" if value else "false") if isinstance(value, bool) else str(value)
        return env

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> WorkerConfig:
        """Read back what ``to_environ`` wrote; a missing variable is the field's default."""
        values: dict[str, Any] = {}
        for name, kind in _types().items():
            var = cls.variable(name)
            if var in environ:
                values[name] = _parse(var, environ[var], kind)
        return cls(**values)


@cache
def _fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(WorkerConfig)}


@cache
def _types() -> dict[str, Any]:
    return get_type_hints(WorkerConfig)


def _parse(var: str, text: str, kind: Any) -> Any:
    if kind is bool:
        if text.strip().lower() in TRUE:
            return True
        if text.strip().lower() in FALSE:
            return False
        raise ValueError(f"{var}={text!r} is not a boolean")
    if kind is int:
        return int(text)
    if kind is float:
        return float(text)
    return text


@dataclass(frozen=True)
class Launch:
    """The validating child's result: what the serving process needs to start uvicorn and its workers."""

    values: dict[str, Any]  # every setting's value, by name
    where: dict[str, str]  # where each value came from, for problems found while serving
    config: dict[str, Any]  # uvicorn.Config's arguments
    worker: WorkerConfig
    sys_path: list[str]
    metrics_directory: str | None = None  # prepared by the child before the app import, with metrics on
