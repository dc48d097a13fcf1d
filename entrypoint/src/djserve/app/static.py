"""Django's collected static files (``STATIC_ROOT`` at ``STATIC_URL``), served by servestatic before Django.

servestatic indexes ``STATIC_ROOT`` once when the worker starts (no autorefresh): only files found
there are ever served, by exact path, so ``..`` in any spelling and symlinks that lead out of
``STATIC_ROOT`` find nothing and go on to Django. Files whose name carries the 12-hex-digit hash of
``ManifestStaticFilesStorage`` are cached for a year as immutable; ``.gz`` and ``.br`` files beside the
originals (servestatic's ``CompressedManifestStaticFilesStorage`` writes them at ``collectstatic``) are
sent to clients that accept them, with ``Vary: Accept-Encoding``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from djserve.probes import ASGIApp

log = logging.getLogger("djserve")
ONE_YEAR = 365 * 24 * 60 * 60  # max-age of hashed files; servestatic's own default is ten years


def location() -> tuple[Path, str] | None:
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


def warn_if_missing() -> None:
    """Once, in the validating process: serving is on but there is nothing to serve."""
    found = location()
    if found is not None and not found[0].is_dir():
        log.warning(
            "serve_static: STATIC_ROOT %s does not exist; static files are not served (run collectstatic)", found[0]
        )


def wrap(app: ASGIApp) -> ASGIApp:
    found = location()
    if found is None or not found[0].is_dir():
        return app  # warned once by the supervisor
    from servestatic import ServeStaticASGI  # here, so that validating never imports it

    served = ServeStaticASGI(app)
    served.FOREVER = ONE_YEAR  # read as each file is indexed, so set before add_files
    served.add_files(*found)
    result: ASGIApp = served
    return result
