"""Django's collected static files (``STATIC_ROOT`` at ``STATIC_URL``), served by servestatic before Django.

servestatic indexes ``STATIC_ROOT`` once when the worker starts (no autorefresh): only files found
there are ever served, by exact path, so ``..`` in any spelling and symlinks that lead out of
``STATIC_ROOT`` find nothing and go on to Django. Files whose name carries the 12-hex-digit hash of
``ManifestStaticFilesStorage`` are cached for a year as immutable; ``.gz`` and ``.br`` files beside the
originals (servestatic's ``CompressedManifestStaticFilesStorage`` writes them at ``collectstatic``) are
sent to clients that accept them, with ``Vary: Accept-Encoding``.
"""

from __future__ import annotations

from djserve.app.types import ASGIApp
from djserve.project import static_location

ONE_YEAR = 365 * 24 * 60 * 60  # max-age of hashed files; servestatic's own default is ten years


def wrap(app: ASGIApp) -> ASGIApp:
    found = static_location()
    if found is None or not found[0].is_dir():
        return app  # warned once by the validating child
    from servestatic import ServeStaticASGI  # here, so that validating never imports it

    served = ServeStaticASGI(app)
    # servestatic 4.4's FOREVER (not public API, hence the cap in pyproject.toml) is read as each file is
    # indexed, so it is set before add_files.
    served.FOREVER = ONE_YEAR
    served.add_files(*found)
    result: ASGIApp = served
    return result
