"""Building images: lint, no CA left in a layer, offline from the wheelhouse, a user's project on top."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import DEMO_ENV, REPO, StartContainer, docker, http_get

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


def test_user_project_built_from_the_image_serves(start_container: StartContainer) -> None:
    buildkit_build("-t", "djserve-userproject:it", str(USER_PROJECT))
    container = start_container("djserve-userproject:it", env={"DJANGO_SECRET_KEY": "only-for-this-test"})
    container.wait_healthy()
    home = http_get(container.url("/"))
    assert home.status == 200
    assert home.body.startswith(b"Welcome to the shop (Django 5.2.")
    assert http_get(container.url("/items")).json() == {"items": ["teapot", "kettle", "cup"]}
    assert http_get(container.url("/-/ready")).status == 200
