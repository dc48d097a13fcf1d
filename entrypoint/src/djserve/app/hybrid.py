"""The hybrid interface: each HTTP request goes to the handler its view was written for.

Django answers a sync view several times faster through its WSGI handler than through its ASGI
handler, but async views and WebSockets need the ASGI one. Per request, the path is resolved with
Django's URLconf (``ROOT_URLCONF``) and:

- a sync view goes to Django's WSGI handler on the WSGI bridge;
- an async view (``asgiref.sync.iscoroutinefunction``, which sees through Django's decorators and
  class-based views with ``view_is_async``) goes to the project's ASGI app;
- a path that resolves to nothing, or whose resolution fails, takes the WSGI path, where Django
  renders its 404 (or 500) as usual;
- WebSockets and lifespan always go to the ASGI app.

Resolutions are cached per path (LRU, 4,096 paths of up to 256 characters). On a fresh startproject
a cached dispatch costs under a microsecond (0.4 to 0.7 µs, best of 9, on a shared 2-core machine);
a path not yet cached costs one resolution, about 60 µs for the admin's URLs. To measure::

    DJANGO_SETTINGS_MODULE=mysite.settings python -m timeit -r 9 \
      -s 'import django; django.setup(); from djserve.app.hybrid import is_async, path_info' \
      -s 'scope = {"path": "/admin/login/"}' 'is_async(path_info(scope))'

A ``request.urlconf`` set by middleware is not seen: routing follows ``ROOT_URLCONF``.
"""

from __future__ import annotations

from functools import lru_cache

from asgiref.sync import iscoroutinefunction
from django.conf import settings
from django.urls import get_resolver
from django.utils import translation

from djserve.app.types import ASGIApp, Receive, Scope, Send

CACHED_PATHS = 4096
# Longer paths are resolved every time: a client sending long unique paths (up to max_header_bytes
# each) would otherwise hold 4,096 of them in memory. Real routes are far shorter.
CACHED_PATH_LENGTH = 256


def _resolves_to_async(path_info: str) -> bool:
    # i18n_patterns match only the active language's prefix: resolve in the language the path names.
    language = translation.get_language_from_path(path_info) or settings.LANGUAGE_CODE
    try:
        with translation.override(language):
            match = get_resolver().resolve(path_info)
    except Exception:  # Resolver404, or a broken URLconf: Django's own handler reports either
        return False
    return iscoroutinefunction(match.func)


_cached = lru_cache(maxsize=CACHED_PATHS)(_resolves_to_async)


def is_async(path_info: str) -> bool:
    """Whether the view at ``path_info`` (the path below the script prefix) is async."""
    if len(path_info) > CACHED_PATH_LENGTH:
        return _resolves_to_async(path_info)
    return _cached(path_info)


def path_info(scope: Scope) -> str:
    """The path Django resolves: the scope's path below the script prefix, as ``ASGIRequest`` computes it.

    The prefix is the documented ``FORCE_SCRIPT_NAME`` if set, else the scope's ``root_path``: the public
    spelling of what ``django.core.handlers.asgi.get_script_prefix``, which is not public API, returns.
    """
    prefix: str = settings.FORCE_SCRIPT_NAME or scope.get("root_path", "") or ""
    path: str = scope["path"]
    return path.removeprefix(prefix) if prefix else path


class Hybrid:
    """Routes sync views to ``wsgi`` (the WSGI bridge) and everything else to ``asgi``."""

    def __init__(self, wsgi: ASGIApp, asgi: ASGIApp) -> None:
        self.wsgi = wsgi
        self.asgi = asgi

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not is_async(path_info(scope)):
            await self.wsgi(scope, receive, send)
        else:
            await self.asgi(scope, receive, send)
