"""Building images: lint, no CA left in a layer, the official python images' own tests, offline from the
wheelhouse, a user's project on top."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import DEMO_ENV, HARDENED, REPO, Container, StartContainer, docker, http_get

CA_BUNDLE = Path(os.environ.get("CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt"))
PEM = re.compile(r"-----BEGIN CERTIFICATE-----\n(.+?)\n-----END CERTIFICATE-----", re.DOTALL)
DISTRIBUTION_CAS = Path("/usr/share/ca-certificates")
USER_PROJECT = REPO / "tests" / "integration" / "userproject"


def make(*args: str, timeout: float) -> None:
    command = ["make", "-s", *args]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def buildkit_build(*args: str) -> None:
    """A BuildKit build through the engine's own client, handing over the CA bundle as make does."""
    client = "/usr/bin/docker" if Path("/usr/bin/docker").exists() else "docker"
    secret = ["--secret", f"id=ca-bundle,src={CA_BUNDLE}"] if CA_BUNDLE.is_file() else []
    env = {**os.environ, "DOCKER_BUILDKIT": "1"}
    command = [client, "build", "-q", *secret, *args]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env, check=False)
    assert result.returncode == 0, result.stderr


def test_dockerfiles_pass_hadolint() -> None:
    make("hadolint", timeout=120)


def _certificates(pem: str) -> set[str]:
    return {body.strip() for body in PEM.findall(pem)}


def test_the_build_ca_bundle_is_in_no_layer() -> None:
    image = "djserve-demo:production"  # both of its pip installs used the secret
    if not CA_BUNDLE.is_file():
        pytest.skip(f"no CA bundle at {CA_BUNDLE}: the builds had no secret to leak")
    # The distribution's public roots may well be in the image; a CA added locally (a TLS-intercepting
    # proxy's, from /usr/local/share/ca-certificates) must appear nowhere in it.
    public = set().union(*(_certificates(crt.read_text()) for crt in DISTRIBUTION_CAS.rglob("*.crt")))
    foreign = _certificates(CA_BUNDLE.read_text()) - public
    if not foreign:
        pytest.skip(f"{CA_BUNDLE} holds only the distribution's public roots: nothing could leak")
    # Two base64 lines from each certificate's key and signature (the first lines hold the issuer's
    # name, which re-issued roots share), as any PEM copy of it would hold them.
    needles = {"\n".join(body.splitlines()[-3:-1]).encode() for body in foreign}
    overlap = max(map(len, needles))
    save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
    assert save.stdout is not None
    tail, found = b"", set()
    while chunk := save.stdout.read(1 << 22):
        window = tail + chunk
        found |= {needle for needle in needles if needle in window}
        tail = window[-overlap:]
    assert save.wait(timeout=120) == 0
    assert found == set()


# The offline tests that docker-library/official-images (test/config.sh) runs on every python image,
# rewritten from its test/tests/python-*/container.py. The images start from the official python image
# or from the Debian stand-in for it (docker/base/python.Dockerfile), and either must pass them. Left
# out: python-no-pyc, deliberately, because the images compile their bytecode at build time for a
# read-only root; python-hy and python-pip-requests-ssl, which install from PyPI.
OFFICIAL_PYTHON_TESTS = {
    # Every optional stdlib extension the official build has; Debian ships dbm.gnu apart (python3-gdbm).
    "python-imports": """
import bz2, curses, dbm.gnu, lzma, readline, zlib
data = b"the official images' round trip"
for codec in (bz2, lzma, zlib):
    assert codec.decompress(codec.compress(data)) == data, codec
""",
    "python-sqlite3": """
import sqlite3
db = sqlite3.connect(":memory:", timeout=1, detect_types=sqlite3.PARSE_DECLTYPES, isolation_level=None)
db.execute("CREATE TABLE t (id INT, txt TEXT)")
db.execute("INSERT INTO t VALUES (?, ?)", (42, "row"))
assert db.execute("SELECT * FROM t").fetchall() == [(42, "row")]
""",
    # A thread's stack holds Python's whole recursion limit instead of crashing the process.
    "python-stack-size": """
import threading
def deeper(depth):
    try:
        deeper(depth + 1)
    except RecursionError:
        pass
thread = threading.Thread(target=deeper, args=(1,))
thread.start()
thread.join()
""",
}


@pytest.mark.parametrize("image", ["djserve:production", "djserve-demo:production"])
@pytest.mark.parametrize("test", OFFICIAL_PYTHON_TESTS)
def test_image_passes_the_official_python_image_tests(image: str, test: str) -> None:
    # As users run a command in the image: through its entrypoint, on a read-only root.
    result = docker("run", "--rm", *HARDENED, image, "python", "-c", OFFICIAL_PYTHON_TESTS[test], check=False)
    assert result.returncode == 0, f"{test} in {image}: {result.stderr}"


@pytest.fixture
def offline_images() -> Iterator[str]:
    """djserve-it-offline{,-demo}:production, built from wheels/ with no network and no cache."""
    repo = "djserve-it-offline"
    make(
        "images-offline", f"OFFLINE_REPO={repo}", "OFFLINE_VARIANTS=production",
        "OFFLINE_BUILD_FLAGS=--no-cache", timeout=900,
    )  # fmt: skip
    yield repo
    docker("rmi", f"{repo}-demo:production", f"{repo}:production", check=False)


def test_offline_build_from_the_wheelhouse_serves(
    offline_images: str, start_container: StartContainer
) -> None:
    container = start_container(f"{offline_images}-demo:production", env=DEMO_ENV)
    container.wait_healthy()
    assert http_get(container.url("/whoami")).json()["preset"] == "production"


USER_ENV = {"DJANGO_SECRET_KEY": "only-for-this-test"}


@pytest.fixture(scope="module")
def user_project() -> str:
    """The user project, built on djserve:production as the README shows (collectstatic included)."""
    buildkit_build("-t", "djserve-userproject:it", str(USER_PROJECT))
    return "djserve-userproject:it"


def test_user_project_built_from_the_image_serves(user_project: str, start_container: StartContainer) -> None:
    container = start_container(user_project, env=USER_ENV)
    container.wait_healthy()
    home = http_get(container.url("/"))
    assert home.status == 200
    assert home.body.startswith(b"Welcome to the shop (Django 5.2.")
    assert http_get(container.url("/items")).json() == {"items": ["teapot", "kettle", "cup"]}
    assert http_get(container.url("/-/ready")).status == 200


def _sha256_in(container: Container, path: str) -> str:
    return container.exec("sha256sum", path).stdout.split()[0]


def test_collected_css_is_served_immutable_and_compressed(
    user_project: str, start_container: StartContainer
) -> None:
    container = start_container(user_project, env=USER_ENV)
    container.wait_healthy()
    manifest = json.loads(container.exec("cat", "/app/staticfiles/staticfiles.json").stdout)
    hashed = manifest["paths"]["admin/css/base.css"]
    # The admin's pages link the hashed name, so the admin has its CSS.
    assert f"/static/{hashed}".encode() in http_get(container.url("/admin/login/")).body
    url, on_disk = container.url(f"/static/{hashed}"), f"/app/staticfiles/{hashed}"

    plain = http_get(url, headers={"Accept-Encoding": "identity"})
    assert plain.status == 200
    assert plain.headers["content-type"].startswith("text/css")
    assert {"max-age=31536000", "immutable"} <= {
        part.strip() for part in plain.headers["cache-control"].split(",")
    }
    assert "content-encoding" not in plain.headers
    assert hashlib.sha256(plain.body).hexdigest() == _sha256_in(container, on_disk)

    gzipped = http_get(url, headers={"Accept-Encoding": "gzip"})
    assert gzipped.headers["content-encoding"] == "gzip"
    assert gzip.decompress(gzipped.body) == plain.body
    assert "Accept-Encoding" in gzipped.headers["vary"]

    brotli = http_get(url, headers={"Accept-Encoding": "gzip, br"})
    assert brotli.headers["content-encoding"] == "br"
    assert hashlib.sha256(brotli.body).hexdigest() == _sha256_in(container, f"{on_disk}.br")
    assert len(brotli.body) < len(plain.body)


def test_wsgi_only_project_serves_under_the_preset_defaults(
    tmp_path: Path, start_container: StartContainer
) -> None:
    # A project from before Django 3.0: wsgi.py, no asgi.py.
    project = tmp_path / "userproject"
    shutil.copytree(USER_PROJECT, project, ignore=shutil.ignore_patterns("asgi.py", "__pycache__"))
    buildkit_build("-t", "djserve-userproject:it-wsgi-only", str(project))
    container = start_container("djserve-userproject:it-wsgi-only", env=USER_ENV)
    container.wait_healthy()
    config = json.loads(container.exec("djserve", "config", "--json").stdout)
    # The preset's `auto` finds Django's own handler in place of the missing asgi.py, so it serves hybrid.
    assert config["interface"] == {
        "value": "hybrid",
        "source": "auto (preset:production): django.core.asgi:get_asgi_application is Django's own handler",
    }
    assert http_get(container.url("/")).body.startswith(b"Welcome to the shop")
    assert http_get(container.url("/items")).json() == {"items": ["teapot", "kettle", "cup"]}
    assert http_get(container.url("/static/admin/css/base.css")).status == 200
