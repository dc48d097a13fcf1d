"""The differential test's views: one of each kind of response a Django project serves.

``echo`` answers, as JSON, what the view sees of the request: the ``request.META`` keys a server builds,
every ``HTTP_*`` header, the parsed query, form, files and cookies, and the body's length and hash.
"""

import datetime
import hashlib
import json
from pathlib import Path

from django.http import (
    FileResponse,
    Http404,
    HttpResponse,
    HttpResponsePermanentRedirect,
    HttpResponseRedirect,
    StreamingHttpResponse,
)
from django.urls import path, re_path
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.gzip import gzip_page
from django.views.decorators.http import condition

DATA = Path(__file__).parent / "data"
META = (
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "PATH_INFO",
    "QUERY_STRING",
    "CONTENT_TYPE",
    "CONTENT_LENGTH",
    "REMOTE_ADDR",
    "SERVER_NAME",
    "SERVER_PORT",
    "wsgi.url_scheme",
)
TEXT = "".join(f"line {n}: the quick brown fox jumps over the lazy dog\n" for n in range(200))


def _file(upload):
    content = upload.read()
    return {
        "name": upload.name,
        "content_type": upload.content_type,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }


def seen(request):
    """What a view sees: sorted JSON, so that equal requests give equal bytes under every server."""
    multipart = request.content_type == "multipart/form-data"
    body = b"" if multipart else request.body  # a multipart body is parsed as a stream, never held
    return {
        "meta": {key: request.META[key] for key in META if key in request.META},
        "headers": {key: value for key, value in request.META.items() if key.startswith("HTTP_")},
        "scheme": request.scheme,
        "host": request.get_host(),
        "path": request.path,
        "path_info": request.path_info,
        "full_path": request.get_full_path(),
        "absolute_uri": request.build_absolute_uri(),
        "GET": dict(request.GET.lists()),
        "POST": dict(request.POST.lists()),
        "FILES": {name: [_file(f) for f in request.FILES.getlist(name)] for name in request.FILES},
        "COOKIES": request.COOKIES,
        "body": {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()},
    }


def _json(data):
    return HttpResponse(json.dumps(data, sort_keys=True, indent=1), content_type="application/json")


@csrf_exempt
def echo(request, rest=""):
    return _json(seen(request))


@csrf_exempt
async def echo_async(request, rest=""):
    return _json(seen(request))


def _chunks():
    for n in range(5):
        yield f"chunk {n}\n".encode()


async def _async_chunks():
    for n in range(5):
        yield f"chunk {n}\n".encode()


def stream(request):
    return StreamingHttpResponse(_chunks(), content_type="text/plain")


async def stream_async(request):
    return StreamingHttpResponse(_async_chunks(), content_type="text/plain")


def file(request):
    return FileResponse((DATA / "data.bin").open("rb"))


def attachment(request):
    return FileResponse((DATA / "notes.txt").open("rb"), as_attachment=True, filename="résumé notes.txt")


def _modified(request):
    return datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)


@csrf_exempt
@condition(etag_func=lambda request: '"v1"', last_modified_func=_modified)
def conditional(request):
    return HttpResponse("conditional body\n", content_type="text/plain")


def redirect(request):
    return HttpResponseRedirect("/echo?from=redirect&to=é")


def redirect_elsewhere(request):
    return HttpResponsePermanentRedirect("https://example.com/moved/ü?x=1")


def no_content(request):
    return HttpResponse(status=204)


def teapot(request):
    return HttpResponse("I'm a teapot\n", status=418, content_type="text/plain")


@gzip_page
def gzipped(request):
    return HttpResponse(TEXT, content_type="text/plain")


@gzip_page
def gzipped_stream(request):
    return StreamingHttpResponse((line + "\n" for line in TEXT.splitlines()), content_type="text/plain")


def cookies(request):
    response = HttpResponse("cookies\n", content_type="text/plain")
    expires = "Fri, 01 Jan 2100 00:00:00 GMT"
    response.set_cookie("plain", "1")
    response.set_cookie(
        "session",
        "abc def",
        expires=expires,
        path="/p",
        domain="testserver",
        secure=True,
        httponly=True,
        samesite="Strict",
    )
    response.set_cookie("lax", "ü", samesite="Lax")
    response.delete_cookie("gone", path="/")
    return response


def headers(request):
    response = HttpResponse("headers\n", content_type="text/plain; charset=utf-8")
    response["X-Mixed-Case"] = "Value"
    response["X-Latin-1"] = "café"
    response["X-Non-Latin-1"] = "€uro"  # Django MIME-encodes what latin-1 cannot hold
    response.headers["Cache-Control"] = "no-cache, no-store"
    response["Content-Language"] = "fr"
    return response


def length_over(request):
    """A body longer than the Content-Length the view set."""
    response = HttpResponse(b"0123456789", content_type="text/plain")
    response["Content-Length"] = "4"
    return response


def length_exact(request):
    """What length_over's client should get: its first four bytes, and a Content-Length that says so."""
    return HttpResponse(b"0123", content_type="text/plain")


def length_under(request):
    """A body shorter than the Content-Length the view set."""
    response = HttpResponse(b"0123456789", content_type="text/plain")
    response["Content-Length"] = "20"
    return response


def error(request):
    raise RuntimeError("raised on purpose")


async def error_async(request):
    raise RuntimeError("raised on purpose")


def not_found(request):
    raise Http404("no such thing")


def big(request):
    return HttpResponse(b"0123456789abcdef" * 65536, content_type="application/octet-stream")


@method_decorator(csrf_exempt, name="dispatch")
class Resource(View):
    def get(self, request):
        return HttpResponse("resource\n", content_type="text/plain")

    def post(self, request):
        return HttpResponse("posted\n", content_type="text/plain", status=201)


@method_decorator(csrf_exempt, name="dispatch")
class AsyncResource(View):
    async def get(self, request):
        return HttpResponse("resource\n", content_type="text/plain")

    async def delete(self, request):
        return HttpResponse(status=204)


urlpatterns = [
    path("echo", echo),
    path("echo-async", echo_async),
    re_path(r"^echo/(?P<rest>.*)$", echo),
    re_path(r"^echo-async/(?P<rest>.*)$", echo_async),
    path("slash/<str:name>/", echo),
    path("stream", stream),
    path("stream-async", stream_async),
    path("file", file),
    path("attachment", attachment),
    path("conditional", conditional),
    path("redirect", redirect),
    path("redirect-elsewhere", redirect_elsewhere),
    path("no-content", no_content),
    path("teapot", teapot),
    path("gzip", gzipped),
    path("gzip-stream", gzipped_stream),
    path("cookies", cookies),
    path("headers", headers),
    path("length-over", length_over),
    path("length-exact", length_exact),
    path("length-under", length_under),
    path("error", error),
    path("error-async", error_async),
    path("not-found", not_found),
    path("big", big),
    path("resource", Resource.as_view()),
    path("resource-async", AsyncResource.as_view()),
]
