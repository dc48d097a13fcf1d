"""Django's first-request work, done once in the preloaded process so that every worker inherits it.

Django imports the URLconf, with every view module it names, and builds its reverse lookup on the first
request that resolves or reverses a URL; it builds its template engines, importing every installed
template tag library, on the first render. Without preload each worker does that on its first requests.
Done before the fork, it is done once: a new or replacement worker's first page on the `wagtail start`
project takes 26 ms instead of 150 ms, and each worker keeps 8 MB less of its own memory
(bench/findings.md).

The preloaded process does it after the prestart steps, as a worker's first request would come after
them: a URLconf that reads the database sees it migrated. What fails here is left for the workers to
meet, as they would without preload: the first request that needs it raises the same error, which Django
answers with its 500. The preloaded process says so once, in a warning.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from djserve.project import import_failure

logger = logging.getLogger("uvicorn.error")


def _urls() -> None:
    from django.urls import get_resolver

    get_resolver().reverse_dict  # noqa: B018 - populates the resolver: imports every included URLconf


def _templates() -> None:
    from django.template import engines

    engines.all()


# Each step: the setting without which Django would not do it either, what it loads, and how.
STEPS: tuple[tuple[str, str, Callable[[], None]], ...] = (
    ("ROOT_URLCONF", "the URLconf", _urls),
    ("TEMPLATES", "the template engines", _templates),
)


def warm() -> None:
    """Each step whose setting the project has, if Django's apps are loaded; one warning for each that fails."""
    apps = sys.modules.get("django.apps")
    if apps is None or not apps.apps.ready:
        return  # not a Django project, or Django not set up: nothing of Django's to share
    from django.conf import settings

    for setting, what, step in STEPS:
        if not getattr(settings, setting, None):
            continue
        try:
            step()
        except Exception as error:  # the workers meet it again, as without preload
            failure = import_failure(what, error)
            logger.warning("preloaded process: %s; each worker tries again when a request needs it", failure)
