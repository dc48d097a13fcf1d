"""The registry (``REGISTRY``) of every setting djserve knows, declared once as click parameters.

uvicorn's own click command is the source of truth for its options: their names, types, choices and
flags come from ``uvicorn.main.main``, so a new uvicorn option works here without a code change. The
kit's settings are declared beside them in the same form, so one conversion path serves every layer.
"""

from __future__ import annotations

import copy
import difflib
import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import click
from uvicorn.config import HTTP_PROTOCOLS, LOOP_FACTORIES, WS_PROTOCOLS
from uvicorn.importer import ImportFromStringError, import_from_string
from uvicorn.main import main as uvicorn_command

from djserve import defaults
from djserve.config import cpu

Group = Literal["uvicorn", "kit"]
PRESETS = ("default", "production", "proxy", "websocket")
SECRETS = frozenset({"ssl_keyfile_password"})

# Click parameters of uvicorn's command that are actions, not settings. Their auto-envvars
# (UVICORN_VERSION, UVICORN_HELP) are often version pins in Dockerfiles and must not act.
NOT_SETTINGS = frozenset({"version", "help"})
IGNORED_ENV = frozenset({"UVICORN_VERSION", "UVICORN_HELP", "DJSERVE_CONFIG"})

# Defaults a container needs where uvicorn's suit a laptop. Django has no lifespan support.
# One worker is spelled out because uvicorn would otherwise read WEB_CONCURRENCY behind our back.
CONTAINER_DEFAULTS: dict[str, Any] = {"host": "0.0.0.0", "port": defaults.PORT, "lifespan": "off", "workers": 1}

# Conventional variables that platforms set; the UVICORN_/DJSERVE_ name wins when both are present.
ENV_ALIASES: dict[str, tuple[str, ...]] = {
    "port": ("PORT",),
    "workers": ("WEB_CONCURRENCY",),
    "forwarded_allow_ips": ("FORWARDED_ALLOW_IPS",),
}


class Integer(click.IntRange):
    """An integer range whose errors read "'abc' is not a valid integer", as uvicorn's own do."""

    name = "integer"


class Float(click.FloatRange):
    """A float range whose errors read "'abc' is not a valid float", as uvicorn's own do."""

    name = "float"


WORKERS_PER_CPU = 64  # far beyond any useful count: a typo (100000), not a choice


class Workers(click.ParamType[int, Any]):
    """A worker count, or ``auto`` for the container's CPU limit."""

    name = "workers"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        if isinstance(value, str) and value.strip().lower() == "auto":
            return cpu.limit()
        result: int = Integer(min=1).convert(value, param, ctx)
        cpus = cpu.limit()
        if result > WORKERS_PER_CPU * cpus:
            self.fail(
                f"{result} is more than {WORKERS_PER_CPU} workers per CPU of the container's limit ({cpus})",
                param,
                ctx,
            )
        return result

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "INTEGER|auto"


class HostPorts(click.ParamType[tuple[tuple[str, int], ...], Any]):
    """``host:port,host:port``: services to wait for before serving."""

    name = "host:port,..."

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[tuple[str, int], ...]:
        if isinstance(value, tuple):
            return value
        entries = value if isinstance(value, list) else str(value).split(",")
        targets = []
        for entry in (str(e).strip() for e in entries):
            if not entry:
                continue
            host, sep, port = entry.rpartition(":")
            if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
                self.fail(f"{entry!r} is not host:port", param, ctx)
            targets.append((host.strip("[]"), int(port)))
        return tuple(targets)


class Implementation(click.ParamType[str, Any]):
    """``loop``, ``http`` or ``ws``: one of uvicorn's names whose package is installed, or ``module:attr``.

    Imported now, so that a missing package is a configuration error rather than a worker that exits 3.
    """

    name = "implementation"

    def __init__(self, known: Mapping[str, str | None]) -> None:
        self.known = known  # uvicorn's own table of names and import paths

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        name = str(value)
        path = self.known.get(name, name)
        if path is None:  # "none"
            return name
        try:
            import_from_string(path)
        except ImportFromStringError as error:
            if ":" in name:
                self.fail(f"cannot import {name!r}: {str(error).rstrip('.')}", param, ctx)
            names = ", ".join(repr(k) for k in self.known)
            self.fail(f"{name!r} is neither one of {names} nor a module:attribute", param, ctx)
        except ModuleNotFoundError as error:  # a known name whose package is missing
            self.fail(f"{name!r} needs the {error.name!r} package, which is not installed", param, ctx)
        except Exception as error:  # an import path runs arbitrary code
            self.fail(f"{name!r} failed to import: {type(error).__name__}: {error}", param, ctx)
        return name


LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
HOSTNAME = re.compile(rf"({LABEL}\.)*{LABEL}\.?")


class Host(click.ParamType[str, Any]):
    """An IP address or a host name to bind to."""

    name = "host"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        host = str(value)
        try:
            ipaddress.ip_address(host)
        except ValueError:
            if len(host) > 253 or not HOSTNAME.fullmatch(host):
                self.fail(f"{host!r} is neither an IP address nor a host name", param, ctx)
        return host


# uvicorn's CLI takes any number where only some make sense; these are the bounds, by option.
BOUNDS: dict[str, click.ParamType[Any, Any]] = {
    "limit_concurrency": Integer(min=1),
    "limit_max_requests": Integer(min=1),
    "limit_max_requests_jitter": Integer(min=0),
    "backlog": Integer(min=1),
    "fd": Integer(min=0),
    "timeout_keep_alive": Integer(min=0),
    "timeout_graceful_shutdown": Integer(min=0),
    # With 0 every worker would be stuck at its first ping, and replaced over and over.
    "timeout_worker_healthcheck": Integer(min=1),
    "reload_delay": Float(min=0),
    "ws_max_size": Integer(min=1),
    "ws_max_queue": Integer(min=1),
    "ws_ping_interval": Float(min=0),
    "ws_ping_timeout": Float(min=0),
    "h11_max_incomplete_event_size": Integer(min=1),
    "host": Host(),
    "loop": Implementation(LOOP_FACTORIES),
    "http": Implementation(HTTP_PROTOCOLS),
    "ws": Implementation(WS_PROTOCOLS),
    # click checks that these exist and are readable files; key and certificate together: validation.
    "ssl_keyfile": click.Path(exists=True, dir_okay=False, readable=True),
    "ssl_certfile": click.Path(exists=True, dir_okay=False, readable=True),
    "ssl_ca_certs": click.Path(exists=True, dir_okay=False, readable=True),
}


def _kit_params() -> list[click.Parameter]:
    return [
        click.Option(["--preset"], type=click.Choice(PRESETS), default="default", help="Preset to start from."),
        click.Option(
            ["--interface"],
            type=click.Choice(["asgi", "wsgi", "hybrid", "auto"]),
            default="asgi",
            help="Django entry point; auto serves hybrid only where it is the same as asgi.",
        ),
        click.Option(["--process"], default="web", help="The PRODUCTION_PROCESSES key to read."),
        click.Option(["--health-path"], default=defaults.HEALTH_PATH, help="Liveness path, answered outside Django."),
        click.Option(["--ready-path"], default=defaults.READY_PATH, help="Readiness path: 200 once Django is loaded."),
        click.Option(
            ["--threads"],
            type=Integer(min=1),
            default=defaults.THREADS,
            help="Threads per worker that run Django's sync code; also its DB connections per worker.",
        ),
        click.Option(
            ["--header-timeout"],
            type=click.FloatRange(min=0, min_open=True),
            default=defaults.HEADER_TIMEOUT,
            help="Seconds a connection has to deliver a complete request head.",
        ),
        click.Option(
            ["--max-header-bytes"], type=Integer(min=1), default=defaults.MAX_HEADER_BYTES, help="Largest request head."
        ),
        click.Option(
            ["--max-headers"],
            type=Integer(min=1),
            default=defaults.MAX_HEADERS,
            help="Most header fields in a request.",
        ),
        click.Option(
            ["--max-body-bytes"], type=Integer(min=0), default=defaults.MAX_BODY_BYTES, help="Largest request body."
        ),
        click.Option(
            ["--ws-max-connections"],
            type=Integer(min=1),
            default=defaults.WS_MAX_CONNECTIONS,
            help="Open WebSockets per worker.",
        ),
        click.Option(["--serve-static/--no-serve-static"], default=False, help="Serve STATIC_ROOT at STATIC_URL."),
        click.Option(["--metrics/--no-metrics"], default=True, help="Prometheus metrics at metrics_path."),
        click.Option(
            ["--metrics-path"], default=defaults.METRICS_PATH, help="Prometheus metrics, answered outside Django."
        ),
        click.Option(
            ["--log-format"],
            type=click.Choice(["text", "json"]),
            default="text",
            help="uvicorn's text, or one JSON object per line for every logger.",
        ),
        click.Option(["--wait-for"], type=HostPorts(), default=(), help="host:port,... to wait for."),
        click.Option(
            ["--wait-timeout"], type=click.FloatRange(min=0), default=30.0, help="Seconds to wait for wait_for in all."
        ),
        click.Option(["--migrate/--no-migrate"], default=False, help="Run migrations before serving."),
        click.Option(["--collectstatic/--no-collectstatic"], default=False, help="Collect static files."),
        click.Option(["--prestart"], type=click.Path(dir_okay=False), help="Script to run before serving."),
        click.Option(
            ["--trust-any-proxy/--no-trust-any-proxy"],
            default=False,
            help="Allow forwarded-allow-ips='*' on a non-loopback bind.",
        ),
        click.Option(
            ["--preload/--no-preload"],
            default=False,
            help="Import the app once, in a process that forks every worker from it (shared memory).",
        ),
        click.Option(
            ["--max-worker-memory"],
            type=Integer(min=32),
            help="MiB of a worker's unique memory (USS) above which it is replaced; unset: never.",
        ),
        click.Option(
            ["--max-worker-lifetime"],
            type=click.FloatRange(min=0, min_open=True),
            help="Seconds after which a worker is replaced, less a jitter of up to 10 %; unset: never.",
        ),
    ]


def _uvicorn_params(kit: dict[str, click.Parameter]) -> list[click.Parameter]:
    params = []
    for original in uvicorn_command.params:
        if original.name in NOT_SETTINGS:
            continue
        if original.name in kit:  # the kit's `interface` takes the place of uvicorn's
            params.append(kit[original.name])
            continue
        param = copy.copy(original)
        if param.name == "app":
            param.required = False  # discovered from Django's settings when not given
        elif param.name == "port":
            param.type = Integer(1, 65535)
        elif param.name == "workers":
            param.type = Workers()
        elif param.name in BOUNDS:
            param.type = BOUNDS[str(param.name)]
        params.append(param)
    return params


@dataclass(frozen=True)
class Setting:
    name: str
    param: click.Parameter
    group: Group
    default: Any
    env: tuple[str, ...]

    @property
    def secret(self) -> bool:
        return self.name in SECRETS

    @property
    def multiple(self) -> bool:
        return bool(getattr(self.param, "multiple", False))

    def convert(self, value: Any) -> Any:
        """Convert a raw value from any layer; click's BadParameter carries the message."""
        if value is None:
            return None
        if self.multiple:
            values = value if isinstance(value, list | tuple) else self.param.type.split_envvar_value(str(value))
            return tuple(self._convert_one(v) for v in values)
        return self._convert_one(value)

    def _convert_one(self, value: Any) -> Any:
        if isinstance(value, list | dict):
            raise click.BadParameter(f"expected a single value, got {type(value).__name__}")
        if isinstance(self.param.type, click.Path) and not isinstance(value, str):  # click passes a TOML -1 through
            raise click.BadParameter(f"{value!r} is not a path")
        try:
            return self.param.type.convert(value, self.param, None)
        except (AttributeError, TypeError, ValueError, OverflowError):  # a TOML date or 0 for a flag, say
            raise click.BadParameter(f"{value!r} is not a valid {self.param.type.name}") from None


def cli_default(param: click.Parameter) -> Any:
    """The default of uvicorn's own CLI, with click's "unset" marker as None (or () for lists).

    click 8.5 marks an unset default with an instance of its private ``Sentinel`` class, recognised by
    name; click is capped at the minor version tested (pyproject.toml)."""
    default = param.default
    if default is None or type(default).__name__ == "Sentinel":
        return () if getattr(param, "multiple", False) else None
    return default


def _default(param: click.Parameter) -> Any:
    return CONTAINER_DEFAULTS.get(str(param.name), cli_default(param))


def _build() -> dict[str, Setting]:
    kit = {str(p.name): p for p in _kit_params()}
    settings: dict[str, Setting] = {}
    for param in _uvicorn_params(kit):
        name = str(param.name)
        group: Group = "kit" if name in kit else "uvicorn"
        env: tuple[str, ...] = (f"DJSERVE_{name.upper()}",) if group == "kit" else ()
        env += (f"UVICORN_{name.upper()}", *ENV_ALIASES.get(name, ()))
        if name == "app":
            env = ("DJSERVE_APP", *env)
        settings[name] = Setting(name, param, group, _default(param), env)
    for name, param in kit.items():
        if name not in settings:
            settings[name] = Setting(name, param, "kit", _default(param), (f"DJSERVE_{name.upper()}",))
    return settings


REGISTRY = _build()


def spellings(param: click.Parameter) -> Iterable[tuple[str, bool]]:
    """Key spellings for files and PRODUCTION_PROCESSES: flag names without dashes; True when negated."""
    for opts, negated in ((param.opts, False), (getattr(param, "secondary_opts", []), True)):
        for opt in opts:
            key = opt.lstrip("-")
            yield key, negated
            yield key.replace("-", "_"), negated
    yield str(param.name), False
    yield str(param.name).replace("_", "-"), False


def key_index(group: Group) -> dict[str, tuple[Setting, bool]]:
    """Map every accepted key spelling of a group to its setting and whether the key negates it."""
    index: dict[str, tuple[Setting, bool]] = {}
    for setting in REGISTRY.values():
        if setting.group == group or setting.name in ("app", "interface"):
            for key, negated in spellings(setting.param):
                index.setdefault(key, (setting, negated))
    return index


def did_you_mean(key: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
