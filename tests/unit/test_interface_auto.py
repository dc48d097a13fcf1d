"""``interface = "auto"``, the presets' default: hybrid only where it gives the same answers as the ASGI app.

Hybrid sends sync views to Django's WSGI handler, past the project's ASGI app. A project whose asgi.py
wraps Django's handler (CORS, tracing, Sentry) or mounts another app beside it would lose what that
app does, so auto serves such a project through its ASGI app and says why at start.
"""

from __future__ import annotations

import http.client
from pathlib import Path
from typing import Any

import pytest

from test_threads import CHANNELS_ASGI

from conftest import djserve, sources

SETTINGS = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
PRODUCTION = {"DJSERVE_PRESET": "production"}

WRAPPED_ASGI = """
import os
os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'mysite.settings')
from django.core.asgi import get_asgi_application

async def mounted(scope, receive, send):
    await send({'type': 'http.response.start', 'status': 200, 'headers': [(b'content-type', b'text/plain')]})
    await send({'type': 'http.response.body', 'body': b'mounted ' + scope['path'].encode()})

class Tagged:
    '''A middleware as users write them: it adds a header, and serves /sub/ with another app.'''

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope['type'] == 'http' and scope['path'].startswith('/sub/'):
            return await mounted(scope, receive, send)

        async def tagged(message):
            if message['type'] == 'http.response.start':
                message['headers'] = [*message.get('headers', []), (b'x-wrapped', b'yes')]
            await send(message)

        await self.app(scope, receive, tagged)

application = Tagged(get_asgi_application())
"""
SKIPPED = "sync views would skip it under hybrid"
WRAPPED_REASON = f"mysite.asgi:application wraps Django's handler (Tagged); {SKIPPED}"


@pytest.fixture
def wrapped(site: Path) -> Path:
    (site / "mysite" / "asgi.py").write_text(WRAPPED_ASGI)
    return site


def fetch(server: Any, path: str) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def test_auto_serves_a_wrapped_project_through_its_asgi_app(wrapped: Path, serve: Any) -> None:
    assert sources(wrapped, **PRODUCTION, **SETTINGS)["interface"] == f"auto (preset:production): {WRAPPED_REASON}"
    server = serve("--workers", "1", **PRODUCTION)
    status, headers, _ = fetch(server, "/admin/login/")  # a sync view
    assert (status, headers.get("x-wrapped")) == (200, "yes")
    assert fetch(server, "/sub/x")[::2] == (200, b"mounted /sub/x")
    _, err = server.stop()
    assert f"interface auto: asgi, because {WRAPPED_REASON}" in err


def test_explicit_hybrid_on_a_wrapped_project_warns_and_stays_hybrid(wrapped: Path, serve: Any) -> None:
    server = serve("--workers", "1", DJSERVE_INTERFACE="hybrid")
    status, headers, _ = fetch(server, "/admin/login/")
    assert (status, "x-wrapped" in headers) == (200, False)  # what the warning says: sync views skip the wrapper
    _, err = server.stop()
    (warning,) = [line for line in err.splitlines() if "interface hybrid" in line]
    assert warning.startswith("WARNING:") and WRAPPED_REASON in warning and "wrap wsgi.py the same way" in warning


def test_auto_serves_a_plain_project_hybrid_and_says_so(site: Path, serve: Any) -> None:
    server = serve("--workers", "1", **PRODUCTION)
    assert fetch(server, "/admin/login/")[0] == 200
    _, err = server.stop()
    assert "interface auto: hybrid, because mysite.asgi:application is Django's own handler" in err
    command = djserve("command", cwd=site, env={**PRODUCTION, **SETTINGS})
    assert "DJSERVE_INTERFACE=hybrid" in command.out.split()
    assert "DJSERVE_WSGI_APP=mysite.wsgi:application" in command.out.split()


def test_auto_routes_a_channels_router_whose_http_is_django(site: Path) -> None:
    (site / "mysite" / "asgi.py").write_text(CHANNELS_ASGI)
    source = sources(site, **PRODUCTION, **SETTINGS)["interface"]
    assert source == "auto (preset:production): mysite.asgi:application routes HTTP to Django's own handler"


def test_auto_serves_an_app_that_is_not_django_through_it(site: Path) -> None:
    (site / "plain.py").write_text("async def app(scope, receive, send):\n    pass\n")
    source = sources(site, DJSERVE_APP="plain:app", DJSERVE_INTERFACE="auto")["interface"]
    assert (
        source == "auto (env:DJSERVE_INTERFACE): plain:app has no Django settings to route by (DJANGO_SETTINGS_MODULE)"
    )
    source = sources(site, DJSERVE_APP="plain:app", DJSERVE_INTERFACE="auto", **SETTINGS)["interface"]
    assert source == f"auto (env:DJSERVE_INTERFACE): plain:app is not Django's handler (app); {SKIPPED}"


@pytest.mark.parametrize("command", ["check", "config", "command"])
def test_auto_with_an_app_that_cannot_import_exits_78_naming_it(site: Path, command: str) -> None:
    asgi = site / "mysite" / "asgi.py"
    asgi.write_text(asgi.read_text() + "\nraise RuntimeError('broken on purpose')\n")
    result = djserve(command, cwd=site, env={**PRODUCTION, **SETTINGS})
    assert result.code == 78
    assert result.lines == [
        "DJANGO_SETTINGS_MODULE (environment): ASGI app not found: mysite.asgi failed to import: "
        f"RuntimeError: broken on purpose ({site / 'mysite' / 'asgi.py'}, line 18)"
    ]
