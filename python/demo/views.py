"""HTTP endpoints that show how the process serving a request is set up."""

import asyncio
import json
import math
import os

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.core.handlers.asgi import ASGIRequest
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST, require_safe

from demo.consumers import BROADCAST_GROUP

MAX_SLOW_SECONDS = 30.0
MAX_BROADCAST_CHARS = 1000


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
            # The server's configured interface: with "hybrid", `interface` shows the path it chose.
            "served_by": os.environ.get("DJSERVE_INTERFACE"),
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


@require_safe
def db(request: HttpRequest) -> JsonResponse:
    """Exactly one query on the default database, from a sync view: one connection per thread."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        (one,) = cursor.fetchone()
    return JsonResponse({"ok": one == 1, "view": "db", "vendor": connection.vendor, "pid": os.getpid()})


# Exempt from CSRF because only a JSON body is accepted: a cross-site page cannot send
# `Content-Type: application/json` without a CORS preflight, which this site never allows.
@csrf_exempt
@require_POST
def broadcast(request: HttpRequest) -> JsonResponse:
    """Sends `{"message": ...}` to every /ws/broadcast/ client from a sync view, through the channel layer."""
    if request.content_type != "application/json":
        return JsonResponse({"error": "send application/json"}, status=415)
    try:
        message = json.loads(request.body)["message"]
    except (ValueError, KeyError, TypeError):
        return JsonResponse({"error": 'expected {"message": "..."}'}, status=400)
    if not isinstance(message, str) or len(message) > MAX_BROADCAST_CHARS:
        return JsonResponse({"error": f"message must be text of at most {MAX_BROADCAST_CHARS} characters"}, status=400)
    channel_layer = get_channel_layer()
    assert channel_layer is not None  # CHANNEL_LAYERS always has a default (settings.py)
    event = {"type": "broadcast.message", "message": message, "sender_pid": os.getpid()}
    async_to_sync(channel_layer.group_send)(BROADCAST_GROUP, event)
    return JsonResponse({"ok": True, "sender_pid": os.getpid(), "interface": _interface(request)})
