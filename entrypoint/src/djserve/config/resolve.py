"""Resolution: every layer merged into one value per setting (a ``KitConfig``), each knowing its source.

defaults < preset < Django's PRODUCTION_PROCESSES < mounted file < environment < command line.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import click

from djserve import project
from djserve.config import discovery, presets, rules
from djserve.config.layers import (
    config_path,
    from_cli,
    from_environ,
    from_file,
    from_production_processes,
)
from djserve.config.model import Effective, KitConfig, Layer, Problem, Value
from djserve.config.options import REGISTRY, Setting

# Interfaces that may route sync views to the WSGI handler: hybrid, and auto until the app is imported.
ROUTED = frozenset({"hybrid", "auto"})


def _convert(value: Value) -> Any:
    converted = value.setting.convert(value.raw)
    return (not converted) if value.negated else converted


def _problem(value: Value, error: click.BadParameter) -> Problem:
    message = error.message.rstrip(".")
    if value.secret:  # a value read from a file is never printed, not even when it is wrong
        return Problem(value.where, f"not a valid {value.setting.param.type.name} (the file's value is not shown)")
    if isinstance(value.raw, str) and value.raw.startswith("tcp://"):
        message += " (a Kubernetes service link? set enableServiceLinks: false on the pod)"
    return Problem(value.where, message)


def _pick(setting: Setting, layers: Sequence[Layer]) -> Any:
    """A setting that chooses another layer, read from the layers above that one."""
    for layer in reversed(layers):
        for value in reversed(layer.values):
            if value.setting is setting:
                try:
                    return _convert(value)
                except click.BadParameter:
                    return setting.default  # reported by the full merge
    return setting.default


def _django_layer(environ: Mapping[str, str], process: str) -> tuple[Layer, Any]:
    module = environ.get("DJANGO_SETTINGS_MODULE")
    if not module:
        return Layer(), None
    django_settings, problem = discovery.load_settings(module)
    if problem:
        return Layer(problems=[problem]), None
    processes = getattr(django_settings, "PRODUCTION_PROCESSES", None)
    return from_production_processes(processes, process), django_settings


def resolve(args: Sequence[str], environ: Mapping[str, str], files: Mapping[str, str] | None = None) -> KitConfig:
    """Merge every layer. Problems are collected, never raised, so all of them are reported at once.

    ``files``: the variables ``djserve.config.envfiles`` defined from ``_FILE`` variables, as it reports them.
    """
    path = config_path(environ)
    upper = [from_file(path) if path else Layer(), from_environ(environ, files), from_cli(args)]
    preset = _pick(REGISTRY["preset"], upper)
    app_dir = _pick(REGISTRY["app_dir"], upper)
    if app_dir not in sys.path:
        sys.path.insert(0, app_dir)  # as uvicorn does with --app-dir; "" is the working directory
    django, django_settings = _django_layer(environ, _pick(REGISTRY["process"], upper))

    config = KitConfig({n: Effective(s.default, "default", f"{n} (default)", s.secret) for n, s in REGISTRY.items()})
    for layer in (presets.layer(preset), django, *upper):
        config.problems += layer.problems
        for value in layer.values:
            try:
                converted = _convert(value)
            except click.BadParameter as error:
                config.problems.append(_problem(value, error))
                continue
            config.values[value.setting.name] = Effective(
                converted, value.source, value.where, value.secret or value.setting.secret
            )

    module = environ.get("DJANGO_SETTINGS_MODULE")
    # hybrid, and auto until the app is imported, may serve sync views through the WSGI handler.
    routes = config["interface"] in ROUTED
    if config["interface"] == "hybrid" and not module:
        config.problems.append(
            Problem(
                discovery.SETTINGS_WHERE,
                f"required by interface hybrid ({config.where('interface')}), which routes each request "
                "by resolving its path with Django's URLconf",
            )
        )
    elif config["app"] is None:
        if django_settings is not None and module:
            kind = "asgi" if routes else config["interface"]
            spec, source, where = discovery.default_app(kind, django_settings, module, fallback=routes)
            config.values["app"] = Effective(spec, source, where)
        elif not module:
            config.problems.append(
                Problem("app (default)", "no app to serve: set DJANGO_SETTINGS_MODULE, or DJSERVE_APP")
            )
    if routes and django_settings is not None and module:
        spec, source, where = discovery.default_app("wsgi", django_settings, module, fallback=True)
        config.wsgi_app = Effective(spec, source, where)
    config.problems += rules.check(config)
    return config


def import_apps(config: KitConfig) -> None:
    """Import the app now, so a missing one is a configuration error rather than a worker crash.

    ``auto`` is resolved here, from the app itself (``discovery.routing``). Hybrid imports both sides:
    the configured app serves async views and WebSockets, the WSGI app sync views.
    """
    if config["app"] is None or any(p.where == discovery.SETTINGS_WHERE for p in config.problems):
        if config["interface"] == "auto" and config["app"] is None:
            effective = config.values["interface"]
            config.values["interface"] = Effective("asgi", f"auto ({effective.source}): no app", effective.where)
        return  # the settings problem already says why the app cannot import
    interface = config["interface"]
    spec, where = config["app"], config.where("app")
    try:
        app = project.load_app(spec, "asgi" if interface in ROUTED else interface, factory=config["factory"])
    except project.AppNotFound as error:
        config.problems.append(Problem(where, str(error)))
        return
    if interface in ROUTED:
        _route(config, discovery.routing(app, spec, routable=config.wsgi_app is not None))
    if config["interface"] == "hybrid" and config.wsgi_app is not None:
        try:
            project.load_app(config.wsgi_app.value, "wsgi")
        except project.AppNotFound as error:
            config.problems.append(Problem(config.wsgi_app.where, str(error)))
    else:
        config.wsgi_app = None


def _route(config: KitConfig, routing: discovery.Routing) -> None:
    """``auto`` becomes hybrid or asgi, with the reason as its source; an explicit hybrid is kept, and
    warned about when sync views would skip what the project's ASGI app adds."""
    effective = config.values["interface"]
    if effective.value == "auto":
        chosen = "hybrid" if routing.hybrid_is_safe else "asgi"
        config.values["interface"] = Effective(chosen, f"auto ({effective.source}): {routing.reason}", effective.where)
        config.notices.append(f"interface auto: {chosen}, because {routing.reason}")
    elif not routing.hybrid_is_safe:
        config.warnings.append(
            f"interface hybrid ({effective.where}): {routing.reason}; serve them through it with "
            "interface asgi or auto, or wrap wsgi.py the same way"
        )
