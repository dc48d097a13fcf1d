"""HTTP endpoints that show how the process serving a request is set up."""

import asyncio
import math
import os

from django.core.handlers.asgi import ASGIRequest
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.http import require_safe

MAX_SLOW_SECONDS = 30.0


def _interface(request: HttpRequest) -> str:
    # The request class shows how Django was really entered (djserve's WSGI bridge hands WSGI requests over),
    # which proves more than the configured DJSERVE_INTERFACE.
    return "asgi" if isinstance(request, ASGIRequest) else "wsgi"


def _preset() -> str | None:
    # djserve exports its resolved preset before serving.
    return os.environ.get("DJSERVE_PRESET")


@require_safe
def index(request: HttpRequest) -> HttpResponse:
    context = {"preset": _preset() or "unknown", "interface": _interface(request), "pid": os.getpid()}
    return render(request, "demo/index.html", context)


@require_safe
def whoami(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "client": request.META.get("REMOTE_ADDR"),
            "scheme": request.scheme,
            "host": request.get_host(),
            "pid": os.getpid(),
            "interface": _interface(request),
            "preset": _preset(),
        }
    )


@require_safe
def sync_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True, "view": "sync", "pid": os.getpid()})


@require_safe
async def async_view(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"ok": True, "view": "async", "pid": os.getpid()})


@require_safe
async def slow(request: HttpRequest) -> JsonResponse:
    """Answer after `?seconds=N` (default 1, at most 30): a request in flight for shutdown tests."""
    try:
        seconds = float(request.GET.get("seconds", "1"))
    except ValueError:
        seconds = math.nan
    # NaN fails both comparisons, so this also rejects "nan" and unparsable input.
    if not 0 <= seconds <= MAX_SLOW_SECONDS:
        return JsonResponse(
            {"error": f"seconds must be a number from 0 to {MAX_SLOW_SECONDS:g}"},
            status=400,
        )
    await asyncio.sleep(seconds)
    return JsonResponse({"ok": True, "view": "slow", "seconds": seconds, "pid": os.getpid()})
