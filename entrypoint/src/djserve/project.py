"""The user's Django project as djserve reads it: its app, imported, and where its static files are.

The validating child and every worker import the app through ``load_app``, so a failure is reported once,
before anything binds, in words that name the module and attribute to look at. Django itself is imported
only by the functions that need it.
"""

from __future__ import annotations

import importlib
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Django's own handlers, for a project without an asgi.py or wsgi.py of its own. They are factories.
DJANGO_HANDLERS = {
    "asgi": "django.core.asgi:get_asgi_application",
    "wsgi": "django.core.wsgi:get_wsgi_application",
}


class AppNotFound(Exception):
    pass


def import_failure(module: str, error: BaseException) -> str:
    """Name the module and, for an error raised inside user code, the file and line."""
    if isinstance(error, ModuleNotFoundError) and error.name and module.startswith(error.name):
        return f"no module named {error.name!r}"
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "importlib" not in f.filename]
    at = f" ({frames[-1].filename}, line {frames[-1].lineno})" if frames else ""
    return f"{module} failed to import: {type(error).__name__}: {error}{at}"


def load_app(spec: str, interface: str, *, factory: bool = False) -> Callable[..., Any]:
    """Import ``module:attribute``; raise AppNotFound with a message that says where to look."""
    module_name, _, attribute = spec.partition(":")
    kind = interface.upper()
    if not module_name or not attribute:
        raise AppNotFound(f"{kind} app {spec!r} must be 'module:attribute'")
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise AppNotFound(f"{kind} app not found: {import_failure(module_name, error)}") from None
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


def static_location() -> tuple[Path, str] | None:
    """(STATIC_ROOT, STATIC_URL's path) from Django's settings when both are set and the URL is local.

    Django's settings are read only if they are already loaded: this never imports Django.
    """
    conf = sys.modules.get("django.conf")
    settings: Any = getattr(conf, "settings", None)
    if settings is None or not settings.configured:
        return None
    root, url = getattr(settings, "STATIC_ROOT", None), getattr(settings, "STATIC_URL", None)
    if not root or not url:
        return None
    parts = urlsplit(str(url))
    if parts.netloc:  # a CDN or another host serves them
        return None
    return Path(root), "/" + parts.path.strip("/") + "/"
