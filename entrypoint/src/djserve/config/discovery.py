"""Finding the user's Django settings, the app to serve when none is configured, and whether hybrid
routing serves that app as it is."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass
from typing import Any

from djserve.config.model import Problem
from djserve.project import DJANGO_HANDLERS, import_failure, static_location

log = logging.getLogger("djserve")

SETTINGS_WHERE = "DJANGO_SETTINGS_MODULE (environment)"


def load_settings(module: str) -> tuple[Any, Problem | None]:
    """Django's configured settings object, or the problem that stops it from loading."""
    try:
        from django.conf import settings
    except ImportError:
        return None, Problem(SETTINGS_WHERE, "Django is not installed in this environment")
    try:
        settings.INSTALLED_APPS  # noqa: B018 - the first attribute access imports the module
    except Exception as error:  # the user's settings can raise anything
        return None, Problem(SETTINGS_WHERE, import_failure(module, error))
    return settings, None


def default_app(interface: str, settings: Any, settings_module: str, *, fallback: bool = False) -> tuple[str, str, str]:
    """The app when none is configured: (spec, source, where).

    With ``fallback`` (hybrid mode, which needs both apps), a project without the module gets Django's
    own handler, so a WSGI-only project (no ``asgi.py``) serves under the hybrid presets unchanged.
    """
    setting = f"{interface.upper()}_APPLICATION"
    dotted = getattr(settings, setting, None)
    if dotted:
        module, _, attribute = str(dotted).rpartition(".")
        return f"{module}:{attribute}", f"django:{setting}", f"{setting} (Django settings)"
    # startproject's layout, also for settings packages such as mysite.settings.production.
    project = settings_module.partition(".")[0]
    if fallback and not _exists(f"{project}.{interface}"):
        return DJANGO_HANDLERS[interface], "django:default", SETTINGS_WHERE
    return f"{project}.{interface}:application", "django:DJANGO_SETTINGS_MODULE", SETTINGS_WHERE


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False
    except Exception:  # the package itself fails to import: load_app names the error
        return True


def warn_if_no_static_root() -> None:
    """Once, in the validating child: serving static files is on but there is nothing to serve."""
    found = static_location()
    if found is not None and not found[0].is_dir():
        log.warning(
            "serve_static: STATIC_ROOT %s does not exist; static files are not served (run collectstatic)", found[0]
        )


# Attributes under which ASGI middleware commonly keep the app they wrap (Starlette, Sentry, OpenTelemetry,
# django-cors-headers' ASGI users, WhiteNoise): followed to tell "wraps Django's handler" from "replaces it".
WRAPPED = ("app", "application", "asgi_app", "_app", "inner")
WRAP_DEPTH = 8


@dataclass(frozen=True)
class Routing:
    """Whether hybrid serves the project's ASGI app as it is, and why, in words for the start log."""

    hybrid_is_safe: bool
    reason: str


def _django_handler(app: Any) -> bool:
    from django.core.handlers.asgi import ASGIHandler

    return isinstance(app, ASGIHandler)


def _http_app(app: Any) -> Any:
    """channels' ProtocolTypeRouter serves HTTP with its "http" entry; any other app serves it itself."""
    if type(app).__name__ == "ProtocolTypeRouter" and type(app).__module__.startswith("channels."):
        return getattr(app, "application_mapping", {}).get("http")
    return app


def _wraps_django(app: Any) -> bool:
    for _ in range(WRAP_DEPTH):
        app = next((inner for name in WRAPPED if (inner := getattr(app, name, None)) is not None), None)
        if app is None:
            return False
        if _django_handler(_http_app(app)):
            return True
    return False


def _name(app: Any) -> str:
    return str(getattr(app, "__qualname__", None) or type(app).__qualname__)


def routing(app: Any, spec: str, *, routable: bool) -> Routing:
    """Hybrid sends sync views to Django's WSGI handler, past the project's ASGI app: that is only the
    same answer when the ASGI app's HTTP side is Django's own ``ASGIHandler``, with nothing around it."""
    if not routable:
        return Routing(False, f"{spec} has no Django settings to route by (DJANGO_SETTINGS_MODULE)")
    http = _http_app(app)
    if _django_handler(http):
        where = "is" if http is app else "routes HTTP to"
        return Routing(True, f"{spec} {where} Django's own handler")
    if http is None:
        return Routing(False, f"{spec} routes no HTTP ({_name(app)} has no 'http' entry)")
    relation = "wraps Django's handler" if _wraps_django(http) else "is not Django's handler"
    return Routing(False, f"{spec} {relation} ({_name(http)}); sync views would skip it under hybrid")
