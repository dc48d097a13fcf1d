"""Static files: STATIC_ROOT served at STATIC_URL by servestatic, before Django, as collectstatic left them."""

from __future__ import annotations

import gzip
import http.client
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import brotli
import pytest

from conftest import config, djserve, environment

SETTINGS = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
STATIC_SETTINGS = """
STATIC_ROOT = BASE_DIR / "staticroot"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "servestatic.storage.CompressedManifestStaticFilesStorage"},
}
"""


def fetch(port: int, path: str, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """A raw GET: the path goes out exactly as written, and nothing is decompressed on the way back."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


@pytest.fixture
def collected(site: Path) -> Path:
    """The project with the recommended storage, after collectstatic (as the image build runs it)."""
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + STATIC_SETTINGS)
    subprocess.run(
        [sys.executable, "-m", "django", "collectstatic", "--noinput", "-v0"],
        cwd=site,
        env=environment(**SETTINGS),
        check=True,
    )
    return site / "staticroot"


def hashed(root: Path, name: str) -> str:
    manifest = json.loads((root / "staticfiles.json").read_text())
    return str(manifest["paths"][name])


@pytest.mark.parametrize("interface", ["asgi", "wsgi"])
def test_hashed_files_are_immutable_and_sent_compressed_to_clients_that_accept_it(
    collected: Path, serve: Any, interface: str
) -> None:
    name = hashed(collected, "admin/css/base.css")
    original = (collected / name).read_bytes()
    assert (collected / f"{name}.gz").exists() and (collected / f"{name}.br").exists()
    server = serve("--serve-static", "--interface", interface)

    status, headers, body = fetch(server.port, f"/static/{name}", **{"Accept-Encoding": "gzip, br"})
    assert status == 200
    assert headers["content-encoding"] == "br" and brotli.decompress(body) == original
    assert {"max-age=31536000", "immutable"} <= set(headers["cache-control"].split(", "))
    assert headers["vary"] == "Accept-Encoding"
    assert headers["content-type"].startswith("text/css")

    status, headers, body = fetch(server.port, f"/static/{name}", **{"Accept-Encoding": "gzip"})
    assert (status, headers["content-encoding"], gzip.decompress(body)) == (200, "gzip", original)

    status, headers, body = fetch(server.port, f"/static/{name}")
    assert (status, body) == (200, original) and "content-encoding" not in headers

    # The unhashed copy may change with the next deploy: cached briefly, never as immutable.
    status, headers, _ = fetch(server.port, "/static/admin/css/base.css")
    assert status == 200 and "immutable" not in headers["cache-control"]


def test_no_path_outside_static_root_is_served(site: Path, collected: Path, serve: Any) -> None:
    (collected / "leak.py").symlink_to(site / "mysite" / "settings.py")
    (collected / "project").symlink_to(site / "mysite", target_is_directory=True)
    server = serve("--serve-static")
    for path in [
        "/static/leak.py",
        "/static/project/settings.py",
        "/static/../mysite/settings.py",
        "/static/..%2fmysite/settings.py",
        "/static/admin/..%2F..%2Fmysite%2Fsettings.py",
        "/static/%2e%2e/mysite/settings.py",
        "/static/..\\mysite\\settings.py",
    ]:
        status, _, body = fetch(server.port, path)
        assert status in (400, 404), path  # Django's 404, or uvicorn's 400 for what HTTP cannot carry
        assert b"SECRET_KEY" not in body, path


def test_with_serve_static_off_django_answers_static_urls(collected: Path, serve: Any) -> None:
    server = serve()
    status, _, body = fetch(server.port, f"/static/{hashed(collected, 'admin/css/base.css')}")
    assert status == 404 and b"Page not found" in body  # Django's DEBUG 404 page


def test_production_presets_serve_static(project: Path) -> None:
    assert config(project, **SETTINGS)["serve_static"] is False
    for preset in ("production", "proxy", "websocket"):
        assert config(project, DJSERVE_PRESET=preset, **SETTINGS)["serve_static"] is True


def test_missing_static_root_is_one_warning_not_a_crash(site: Path, serve: Any) -> None:
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + STATIC_SETTINGS)
    server = serve("--serve-static", "--workers", "2")
    status, _, _ = fetch(server.port, "/static/admin/css/base.css")
    assert status == 404
    _, err = server.stop()
    warnings = [line for line in err.splitlines() if "STATIC_ROOT" in line]
    assert len(warnings) == 1 and "does not exist" in warnings[0], err


def test_paths_djserve_answers_must_not_clash(site: Path) -> None:
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + STATIC_SETTINGS)
    env = {**SETTINGS, "DJSERVE_SERVE_STATIC": "true"}
    result = djserve("check", "--metrics-path", "/-/health", "--ready-path", "/static/ready", cwd=site, env=env)
    assert result.code == 78
    assert result.lines == [
        "--metrics-path (command line): must differ from health_path (health_path (default))",
        "--ready-path (command line): '/static/ready' is under STATIC_URL '/static/' (Django settings)",
    ]
    assert djserve("check", "--ready-path", "/static/ready", cwd=site, env=SETTINGS).code == 0  # not serving static
