"""The demo's URLs plus `/leak?kib=N`: each request keeps N KiB (default 1024, 1 MiB) for the worker's life."""

from demo.urls import urlpatterns as demo_urlpatterns
from django.http import HttpRequest, HttpResponse
from django.urls import path

KEPT: list[bytes] = []


def leak(request: HttpRequest) -> HttpResponse:
    kib = int(request.GET.get("kib", "1024"))
    # bytes of a repeated byte are written out, so every page counts in the worker's unique memory.
    KEPT.append(b"x" * (kib * 1024))
    return HttpResponse(f"{len(KEPT)} kept\n", content_type="text/plain")


urlpatterns = [path("leak", leak, name="leak"), *demo_urlpatterns]
