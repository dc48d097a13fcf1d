"""Finding the user's Django settings and application.

Both are imported the same way in the validating parent and in each uvicorn worker, so a failure is
reported once, before anything binds, in words that name the module and attribute to look at.
"""

from __future__ import annotations

import importlib
import importlib.util
import traceback
from collections.abc import Callable
from typing import Any

from djserve.sources import Problem

SETTINGS_WHERE = "DJANGO_SETTINGS_MODULE (environment)"
# Django's own handlers, for hybrid mode when the project has no module of its own. They are factories.
DJANGO_HANDLERS = {
    "asgi": "django.core.asgi:get_asgi_application",
    "wsgi": "django.core.wsgi:get_wsgi_application",
}


class AppNotFound(Exception):
    pass


def _import_failure(module: str, error: BaseException) -> str:
    """Name the module and, for an error raised inside user code, the file and line."""
    if isinstance(error, ModuleNotFoundError) and error.name and module.startswith(error.name):
        return f"no module named {error.name!r}"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "importlib" not in f.filename]
    at = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{module} failed to import: {type(error).__name__}: {error}{at}"


def load_settings(module: str) -> tuple[Any, Problem | None]:
    """Django's configured settings object, or the problem that stops it from loading."""
    try:
        from django.conf import settings
    except ImportError:
        return None, Problem(SETTINGS_WHERE, "Django is not installed in this environment")
    try:
        settings.INSTALLED_APPS  # noqa: B018 - the first attribute access imports the module
    except Exception as error:  # the user's settings can raise anything
        return None, Problem(SETTINGS_WHERE, _import_failure(module, error))
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


def hybrid_wsgi_app(settings_module: str) -> tuple[str, str]:
    """Hybrid mode's WSGI side, which serves sync views: (spec, where). The configured app is the ASGI side."""
    from django.conf import settings

    spec, _, where = default_app("wsgi", settings, settings_module, fallback=True)
    return spec, where


def _exists(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ImportError:
        return False
    except Exception:  # the package itself fails to import: load_app names the error
        return True


def load_app(spec: str, interface: str, *, factory: bool = False) -> Callable[..., Any]:
    """Import ``module:attribute``; raise AppNotFound with a message that says where to look."""
    module_name, _, attribute = spec.partition(":")
    kind = interface.upper()
    if not module_name or not attribute:
        raise AppNotFound(f"{kind} app {spec!r} must be 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise AppNotFound(f"{kind} app not found: {_import_failure(module_name, error)}") from None
    try:
        app: Any = module
        for part in attribute.split("."):
            app = getattr(app, part)
    except AttributeError:
        filename = f"{module_name.rpartition('.')[2]}.py"
        raise AppNotFound(
            f"{kind} app not found: {module_name} has no attribute {attribute!r} (does {filename} define {attribute}?)"
        ) from None
    if factory or spec in DJANGO_HANDLERS.values():
        app = app()
    if not callable(app):
        raise AppNotFound(f"{kind} app {spec} is not callable")
    result: Callable[..., Any] = app
    return result
