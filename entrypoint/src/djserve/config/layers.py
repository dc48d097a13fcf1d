"""The configuration layers, each read into raw values that remember where they came from.

Nothing here converts a value: every layer hands raw values to one conversion in ``resolve``, so a
bad port reads the same whether it came from a file, Django's settings, the environment or the CLI.
"""

from __future__ import annotations

import copy
import re
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from djserve.config.model import Layer, Problem, Value
from djserve.config.options import IGNORED_ENV, REGISTRY, Group, did_you_mean, key_index

DEFAULT_CONFIG = Path("/etc/djserve/djserve.toml")

# Kubernetes injects <SERVICE>_SERVICE_HOST, <SERVICE>_PORT=tcp://... for every Service in the namespace;
# a Service named "djserve" must not turn into configuration errors.
SERVICE_LINK = re.compile(r"^[A-Z0-9_]+_(SERVICE_HOST|SERVICE_PORT(_\w+)?|PORT(_\d+_(TCP|UDP|SCTP)(_\w+)?)?)$")


def from_table(table: Mapping[str, Any], *, source: str, origin: str) -> Layer:
    """The mounted file's shape (also the presets'): kit settings on top, uvicorn flags under [uvicorn]."""
    layer = Layer()
    groups: list[tuple[Group, str, Mapping[str, Any]]] = [
        ("kit", "", {k: v for k, v in table.items() if k != "uvicorn"})
    ]
    uvicorn_table = table.get("uvicorn", {})
    if not isinstance(uvicorn_table, Mapping):
        layer.problems.append(Problem(f"uvicorn ({origin})", "must be a table: [uvicorn]"))
    else:
        groups.append(("uvicorn", "uvicorn.", uvicorn_table))
    for group, prefix, entries in groups:
        index = key_index(group)
        other = key_index("uvicorn" if group == "kit" else "kit")
        for key, raw in entries.items():
            where = f"{prefix}{key} ({origin})"
            if key in index:
                setting, negated = index[key]
                layer.values.append(Value(setting, raw, source, where, negated))
            elif key in other:
                hint = "under [uvicorn]" if group == "kit" else "at the top level, not under [uvicorn]"
                layer.problems.append(Problem(where, f"{key!r} belongs {hint}"))
            else:
                layer.problems.append(Problem(where, f"unknown setting{did_you_mean(key, index)}"))
    return layer


def from_file(path: Path) -> Layer:
    try:
        with path.open("rb") as file:
            table = tomllib.load(file)
    except tomllib.TOMLDecodeError as error:
        return Layer(problems=[Problem(str(path), f"invalid TOML: {error}")])
    except RecursionError:
        return Layer(problems=[Problem(str(path), "invalid TOML: nested too deeply")])
    except UnicodeDecodeError as error:
        return Layer(problems=[Problem(str(path), f"not UTF-8 text (byte {error.start}): TOML files are UTF-8")])
    except OSError as error:
        return Layer(problems=[Problem(str(path), f"cannot read: {error.strerror}")])
    layer = from_table(table, source=f"file:{path}", origin=str(path))
    layer.problems += _conflicts(layer.values, "in the same file")
    return layer


def _conflicts(values: Sequence[Value], scope: str) -> list[Problem]:
    """Two spellings of one setting in one layer (``access-log`` and ``no-access-log``): neither wins."""
    first: dict[str, Value] = {}
    problems = []
    for value in values:
        seen = first.setdefault(value.setting.name, value)
        if seen is not value:
            problems.append(Problem(value.where, f"conflicts with {seen.where.partition(' (')[0]} {scope}; keep one"))
    return problems


def config_path(environ: Mapping[str, str]) -> Path | None:
    """``DJSERVE_CONFIG`` must exist when set; the default path is optional."""
    if "DJSERVE_CONFIG" in environ:
        return Path(environ["DJSERVE_CONFIG"])
    return DEFAULT_CONFIG if DEFAULT_CONFIG.exists() else None


def from_environ(environ: Mapping[str, str], files: Mapping[str, str] | None = None) -> Layer:
    """``files`` maps each variable that ``djserve.config.envfiles`` defined from a file to its ``_FILE`` name."""
    files = files or {}
    layer = Layer()
    known = set(IGNORED_ENV)
    for setting in REGISTRY.values():
        known.update(setting.env)
        known.update(f"{var}_FILE" for var in setting.env)  # reported by djserve.config.envfiles when left over
        # The first name present wins: DJSERVE_/UVICORN_ names before conventional aliases like PORT.
        var = next((var for var in setting.env if var in environ), None)
        if var is not None:
            name = files.get(var, var)
            layer.values.append(
                Value(setting, environ[var], f"env:{name}", f"{name} (environment)", secret=var in files)
            )
    prefixed = sorted(k for k in known if k.startswith(("DJSERVE_", "UVICORN_")))
    for var in environ:
        if var.startswith(("DJSERVE_", "UVICORN_")) and var not in known and not SERVICE_LINK.match(var):
            where = f"{files.get(var, var)} (environment)"
            layer.problems.append(Problem(where, f"unknown setting{did_you_mean(var, prefixed)}"))
    return layer


def from_production_processes(processes: Any, process: str) -> Layer:
    """django-prodserver's ``PRODUCTION_PROCESSES[process]``: "True" strings, None values, dashed keys."""
    origin = f"PRODUCTION_PROCESSES[{process!r}]"
    source = f"django:PRODUCTION_PROCESSES[{process}]"
    entry = processes.get(process) if isinstance(processes, Mapping) else None
    if entry is None:
        return Layer()
    if not isinstance(entry, Mapping):
        return Layer(problems=[Problem(f"{origin} (Django settings)", "must be a dict with BACKEND and ARGS")])
    layer = Layer()
    backend = str(entry.get("BACKEND", ""))
    interface = {"UvicornServer": "asgi", "UvicornWSGIServer": "wsgi"}.get(backend.rpartition(".")[2])
    if interface is None:
        layer.problems.append(
            Problem(
                f"{origin}['BACKEND'] (Django settings)",
                f"{backend!r} is not a uvicorn backend; djserve serves "
                "django_prodserver.backends.uvicorn.UvicornServer or UvicornWSGIServer",
            )
        )
    else:
        where = f"{origin}['BACKEND'] (Django settings)"
        layer.values.append(Value(REGISTRY["interface"], interface, source, where))
    args = entry.get("ARGS", {})
    index = key_index("uvicorn")
    given = []
    for key, raw in args.items() if isinstance(args, Mapping) else []:
        where = f"{origin}['ARGS'][{key!r}] (Django settings)"
        if key not in index:
            layer.problems.append(Problem(where, f"unknown uvicorn option{did_you_mean(str(key), index)}"))
            continue
        setting, negated = index[key]
        # django-prodserver writes "None" for "leave it to uvicorn".
        value = None if raw is None or raw == "None" else raw
        given.append(Value(setting, value, source, where, negated))
    layer.values += given
    layer.problems += _conflicts(given, "in the same ARGS")
    return layer


def serve_command() -> click.Command:
    """``djserve serve``'s options: uvicorn's own, with every value kept raw for the shared conversion."""
    params = []
    for setting in REGISTRY.values():
        param = setting.param
        if not getattr(param, "is_flag", False):
            param = _raw(param)
        params.append(param)
    return click.Command("serve", params=params, help="Validate, run the prestart steps, then serve.")


def _raw(param: click.Parameter) -> click.Parameter:
    raw = copy.copy(param)
    raw.type = click.STRING
    return raw


def from_cli(args: Sequence[str]) -> Layer:
    command = serve_command()
    try:
        ctx = command.make_context("djserve serve", list(args))
    except click.UsageError as error:
        return Layer(problems=[Problem("command line", error.format_message())])
    layer = Layer()
    for name, raw in ctx.params.items():
        if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE:
            setting = REGISTRY[name]
            opt = setting.param.opts[0] if setting.param.opts[0].startswith("-") else name.upper()
            layer.values.append(Value(setting, raw, "cli", f"{opt} (command line)"))
    return layer
