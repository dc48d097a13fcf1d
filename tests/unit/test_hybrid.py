"""The hybrid interface: sync views on Django's WSGI handler, async views and WebSockets on its ASGI app."""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import pytest
from websockets.sync.client import connect

from test_threads import CHANNELS_ASGI

from conftest import config, djserve, get, sources

SETTINGS = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
HYBRID = {"DJSERVE_INTERFACE": "hybrid", "DJSERVE_THREADS": "2"}

VIEWS = """
import asyncio, threading, time
from asgiref.sync import async_to_sync, sync_to_async
from django.conf import settings
from django.conf.urls.i18n import i18n_patterns
from django.http import HttpResponse, StreamingHttpResponse
from django.views import View
from django.views.decorators.http import require_GET

RELEASE = settings.BASE_DIR / 'release'

def which(request):
    return HttpResponse(f'{type(request).__name__} {request.path} {hasattr(request, "scope")}')

async def which_async(request):
    return which(request)

def meta(request):
    return HttpResponse(' '.join(sorted(k for k in request.META if not k.startswith('HTTP_'))))

async def meta_async(request):
    return meta(request)

class AsyncClassView(View):
    async def get(self, request):
        return which(request)

@require_GET
async def decorated(request):
    return which(request)

def ident(request):
    return HttpResponse(str(threading.get_ident()))

async def ident_async(request):
    return HttpResponse(str(await sync_to_async(threading.get_ident)()))

async def loop_id():
    return str(id(asyncio.get_running_loop()))

async def loop_async(request):
    return HttpResponse(await loop_id())

def loop_sync(request):
    return HttpResponse(async_to_sync(loop_id)())

def sync_chunks():
    yield b'first\\n'
    for _ in range(600):  # until the test releases the rest, at most 30 s
        if RELEASE.exists():
            break
        time.sleep(0.05)
    yield b'second\\n'

async def async_events():
    yield 'data: first\\n'
    for _ in range(600):
        if RELEASE.exists():
            break
        await asyncio.sleep(0.05)
    yield 'data: second\\n'

def sync_stream(request):
    return StreamingHttpResponse(sync_chunks())

async def sse(request):
    return StreamingHttpResponse(async_events(), content_type='text/event-stream')

urlpatterns += [
    path('sync', which),
    path('async', which_async),
    path('meta', meta),
    path('meta-async', meta_async),
    path('class', AsyncClassView.as_view()),
    path('decorated', decorated),
    path('loop-async', loop_async),
    path('ident', ident),
    path('ident-async', ident_async),
    path('loop-sync', loop_sync),
    path('sync-stream', sync_stream),
    path('sse', sse),
]
urlpatterns += i18n_patterns(path('i18n-sync', which), path('i18n-async', which_async))
"""

I18N = """
LANGUAGE_CODE = 'en'
LANGUAGES = [('en', 'English'), ('fr', 'French')]
COMMON = MIDDLEWARE.index('django.middleware.common.CommonMiddleware')
MIDDLEWARE.insert(COMMON, 'django.middleware.locale.LocaleMiddleware')
"""


@pytest.fixture
def views(site: Path) -> Path:
    urls = site / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + VIEWS)
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + I18N)
    return site


def text(server: Any, path: str) -> str:
    status, body = get(server.url(path))
    assert status == 200, body
    return body.decode()


def test_sync_views_take_the_wsgi_handler_and_async_views_the_asgi_app(views: Path, serve: Any) -> None:
    server = serve(**HYBRID)
    for _ in range(2):  # the second round comes from the resolution cache
        assert text(server, "/sync") == "WSGIRequest /sync False"
        assert text(server, "/async") == "ASGIRequest /async True"
        assert text(server, "/class") == "ASGIRequest /class True"
        assert text(server, "/decorated") == "ASGIRequest /decorated True"
    assert get(server.url("/nowhere"))[0] == 404
    assert get(server.url("/-/ready")) == (200, b"ready\n")


def test_a_sync_view_sees_the_wsgi_environ_in_meta(views: Path, serve: Any) -> None:
    """What the README says differs for a sync view's request.META."""
    server = serve(**HYBRID)
    wsgi = set(text(server, "/meta").split())
    asgi = set(text(server, "/meta-async").split())
    same = {"REMOTE_ADDR", "SERVER_NAME", "SERVER_PORT", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "REQUEST_METHOD"}
    assert same <= wsgi & asgi
    assert {"wsgi.input", "wsgi.errors", "wsgi.url_scheme", "wsgi.version", "SERVER_PROTOCOL"} <= wsgi - asgi
    assert asgi - wsgi == {"REMOTE_HOST"}
    assert not any(key.startswith("asgi.") for key in wsgi | asgi)


def test_both_paths_honour_the_root_path(views: Path, serve: Any) -> None:
    server = serve("--root-path", "/api", **HYBRID)
    assert text(server, "/sync") == "WSGIRequest /api/sync False"
    assert text(server, "/async") == "ASGIRequest /api/async True"
    assert get(server.url("/api/async"))[0] == 404  # the proxy in front strips the prefix


def test_i18n_patterns_route_in_every_language(views: Path, serve: Any) -> None:
    server = serve(**HYBRID)
    for language in ("en", "fr"):
        assert text(server, f"/{language}/i18n-sync") == f"WSGIRequest /{language}/i18n-sync False"
        assert text(server, f"/{language}/i18n-async") == f"ASGIRequest /{language}/i18n-async True"


def test_sync_code_of_both_paths_runs_on_the_same_threads(views: Path, serve: Any) -> None:
    server = serve(DJSERVE_INTERFACE="hybrid", DJSERVE_THREADS="1")
    idents = {text(server, path) for path in ("/ident", "/ident-async", "/ident", "/ident-async")}
    assert len(idents) == 1


def test_async_to_sync_in_a_sync_view_runs_on_the_workers_loop(views: Path, serve: Any) -> None:
    server = serve(**HYBRID)
    main_loop = text(server, "/loop-async")
    assert text(server, "/loop-sync") == main_loop
    assert text(server, "/loop-sync") == main_loop


@pytest.mark.parametrize(
    ("path", "first", "rest"), [("/sync-stream", "first\n", "second\n"), ("/sse", "data: first\n", "data: second\n")]
)
def test_streaming_responses_send_their_first_chunk_before_the_generator_ends(
    views: Path, serve: Any, path: str, first: str, rest: str
) -> None:
    """Either response would be buffered whole on the other handler; the generator waits for the test."""
    server = serve(**HYBRID)
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=20)
    connection.request("GET", path)
    response = connection.getresponse()
    assert response.status == 200
    assert response.readline().decode() == first
    (views / "release").touch()
    assert response.read().decode() == rest
    connection.close()


def test_a_project_without_asgi_py_serves_under_the_production_preset(views: Path, serve: Any) -> None:
    (views / "mysite" / "asgi.py").unlink()
    assert config(views, DJSERVE_PRESET="production", **SETTINGS)["app"] == "django.core.asgi:get_asgi_application"
    server = serve("--workers", "1", DJSERVE_PRESET="production")
    assert text(server, "/sync") == "WSGIRequest /sync False"
    assert text(server, "/async") == "ASGIRequest /async True"


DJANGO_OWN = "mysite.asgi:application is Django's own handler"


@pytest.mark.parametrize(
    ("preset", "interface", "source"),
    [
        ("production", "hybrid", f"auto (preset:production): {DJANGO_OWN}"),
        ("proxy", "hybrid", f"auto (preset:proxy): {DJANGO_OWN}"),  # the preset in force, which extends production
        ("websocket", "hybrid", f"auto (preset:websocket): {DJANGO_OWN}"),
        ("default", "asgi", "default"),
    ],
)
def test_config_shows_the_interface_and_its_source(project: Path, preset: str, interface: str, source: str) -> None:
    assert config(project, DJSERVE_PRESET=preset, **SETTINGS)["interface"] == interface
    assert sources(project, DJSERVE_PRESET=preset, **SETTINGS)["interface"] == source


def test_the_websocket_preset_accepts_hybrid_and_asgi(project: Path) -> None:
    for interface in ("hybrid", "asgi"):
        result = djserve(
            "check", cwd=project, env={**SETTINGS, "DJSERVE_PRESET": "websocket", "DJSERVE_INTERFACE": interface}
        )
        assert result.code == 0, result.err


def test_hybrid_without_django_settings_names_django_settings_module(project: Path) -> None:
    result = djserve(
        "check", cwd=project, env={"DJSERVE_INTERFACE": "hybrid", "DJSERVE_APP": "mysite.asgi:application"}
    )
    assert result.code == 78
    (line,) = result.lines
    assert line.startswith("DJANGO_SETTINGS_MODULE (environment): required by interface hybrid"), line
    # auto, the presets' interface, needs no Django settings: without them it serves the app given, or asks for one.
    result = djserve("check", cwd=project, env={"DJSERVE_PRESET": "production"})
    assert (result.code, result.lines) == (
        78,
        ["app (default): no app to serve: set DJANGO_SETTINGS_MODULE, or DJSERVE_APP"],
    )


@pytest.mark.parametrize(
    ("kind", "where"),
    # startproject's settings name the WSGI app, and not the ASGI one.
    [("wsgi", "WSGI_APPLICATION (Django settings)"), ("asgi", "DJANGO_SETTINGS_MODULE (environment)")],
)
def test_a_broken_wsgi_or_asgi_module_is_named(site: Path, kind: str, where: str) -> None:
    module = site / "mysite" / f"{kind}.py"
    module.write_text(module.read_text() + "\nraise RuntimeError('broken on purpose')\n")
    result = djserve("check", cwd=site, env={**SETTINGS, "DJSERVE_INTERFACE": "hybrid"})
    assert result.code == 78
    (line,) = result.lines
    assert line.startswith(
        f"{where}: {kind.upper()} app not found: mysite.{kind} failed to import: RuntimeError: broken on purpose"
    ), line
    assert "Traceback" not in result.err


def test_a_missing_wsgi_application_setting_is_named(site: Path) -> None:
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\nWSGI_APPLICATION = 'mysite.wsgi.missing'\n")
    result = djserve("check", cwd=site, env={**SETTINGS, "DJSERVE_INTERFACE": "hybrid"})
    assert result.code == 78
    assert result.lines == [
        "WSGI_APPLICATION (Django settings): WSGI app not found: mysite.wsgi has no attribute 'missing' "
        "(does wsgi.py define missing?)"
    ]


def test_websockets_go_to_the_asgi_app(views: Path, serve: Any) -> None:
    (views / "mysite" / "asgi.py").write_text(CHANNELS_ASGI)
    server = serve(**HYBRID)
    with connect(f"ws://127.0.0.1:{server.port}/ws", open_timeout=5) as socket:
        socket.send("hello")
        assert socket.recv(timeout=5) == "hello"
    assert text(server, "/sync") == "WSGIRequest /sync False"
    assert text(server, "/async") == "ASGIRequest /async True"
