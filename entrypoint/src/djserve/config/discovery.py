"""Finding the user's Django settings, and the app to serve when none is configured."""

from __future__ import annotations

import importlib.util
import logging
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
