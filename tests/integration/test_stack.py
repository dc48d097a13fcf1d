"""The compose staging stack: each variant with its real neighbours (nginx in front, redis behind)."""

from __future__ import annotations

import errno
import json
import shutil
from contextlib import ExitStack
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from harness import Stack, docker, http_get

# Published app ports: (service, container port) as clients reach each variant.
PRODUCTION = ("web", 8000)
PROXY = ("web-proxy", 8080)  # nginx, in web-proxy's network namespace
PROXY_TLS_EDGE = ("web-proxy", 8443)  # nginx's "behind a TLS-terminating load balancer" port
WEBSOCKET = ("web-ws", 8000)


def ws_connect(stack: Stack, service: str, port: int, path: str) -> ClientConnection:
    host = f"127.0.0.1:{stack.services.port_for(service, port)}"
    # Channels checks Origin against ALLOWED_HOSTS, as it would for a browser.
    return connect(f"ws://{host}{path}", origin=Origin(f"http://{host}"), proxy=None, open_timeout=15)


@pytest.mark.parametrize(
    ("service", "preset"), [(PRODUCTION, "production"), (PROXY, "proxy"), (WEBSOCKET, "websocket")]
)
def test_each_variant_serves_with_its_preset(stack: Stack, service: tuple[str, int], preset: str) -> None:
    response = http_get(stack.url(*service, "/whoami"))
    assert response.status == 200
    assert response.json()["preset"] == preset
    assert response.json()["interface"] == "asgi"


@pytest.mark.parametrize("view", ["sync", "async"])
def test_sync_and_async_views(stack: Stack, view: str) -> None:
    response = http_get(stack.url(*PRODUCTION, f"/{view}"))
    assert response.status == 200
    assert response.json()["view"] == view


def test_proxy_scheme_is_what_nginx_says(stack: Stack) -> None:
    assert http_get(stack.url(*PROXY, "/whoami")).json()["scheme"] == "http"
    assert http_get(stack.url(*PROXY_TLS_EDGE, "/whoami")).json()["scheme"] == "https"
    # A client's own X-Forwarded-Proto never gets through: nginx sets the header.
    claimed = http_get(stack.url(*PROXY, "/whoami"), headers={"X-Forwarded-Proto": "https"})
    assert claimed.json()["scheme"] == "http"


def test_proxy_client_is_the_real_peer_despite_forged_forwarded_for(stack: Stack) -> None:
    network = f"{stack.project}_default"
    gateway = docker("network", "inspect", "-f", "{{(index .IPAM.Config 0).Gateway}}", network).stdout.strip()
    url = stack.url(*PROXY, "/whoami")
    # Published ports reach nginx from the network's gateway; that is the client the app must see.
    assert http_get(url).json()["client"] == gateway
    for forged in ("203.0.113.7", "203.0.113.7, 127.0.0.1", "127.0.0.1"):
        assert http_get(url, headers={"X-Forwarded-For": forged}).json()["client"] == gateway, forged


def test_proxy_app_port_is_not_reachable_from_outside(stack: Stack) -> None:
    probe = (
        "import socket, sys; s = socket.socket(); s.settimeout(5); "
        "sys.exit(s.connect_ex((sys.argv[1], int(sys.argv[2]))))"
    )
    # From a neighbour container on the same network: nginx answers, the app refuses.
    assert stack.exec("web", "python", "-c", probe, "web-proxy", "8080").returncode == 0
    assert stack.exec("web", "python", "-c", probe, "web-proxy", "8000").returncode == errno.ECONNREFUSED
    # And the host has no published port for it.
    published = json.loads(stack.container("web-proxy").inspect("{{json .NetworkSettings.Ports}}"))
    assert published["8000/tcp"] is None
    assert published["8080/tcp"]


@pytest.mark.parametrize("service", [WEBSOCKET, PROXY], ids=["websocket", "through-nginx"])
def test_websocket_echo(stack: Stack, service: tuple[str, int]) -> None:
    with ws_connect(stack, *service, "/ws/echo/") as socket:
        socket.send("ping ünïcode")
        assert socket.recv(timeout=10) == "ping ünïcode"
        socket.send(b"\x00\x01binary")
        assert socket.recv(timeout=10) == b"\x00\x01binary"


def _receive(socket: ClientConnection, message: str) -> dict[str, object]:
    """The broadcast of `message` as this socket gets it (earlier broadcasts are passed over)."""
    for _ in range(100):
        reply: dict[str, object] = json.loads(socket.recv(timeout=10))
        if reply["message"] == message:
            return reply
    raise AssertionError(f"{message!r} never arrived")


def test_broadcast_reaches_a_client_on_another_worker(stack: Stack) -> None:
    pids: dict[int, ClientConnection] = {}
    with ExitStack() as sockets:
        opened: list[ClientConnection] = []
        # The kernel spreads connections over the two workers; a bounded number finds both.
        for attempt in range(30):
            socket = sockets.enter_context(ws_connect(stack, *WEBSOCKET, "/ws/broadcast/"))
            opened.append(socket)
            probe = f"probe {attempt}"
            socket.send(probe)
            replies = [_receive(each, probe) for each in opened]
            own_pid = replies[-1]["receiver_pid"]
            assert isinstance(own_pid, int)
            pids.setdefault(own_pid, socket)
            if len(pids) == 2:
                break
        assert len(pids) == 2, "every connection landed on one worker"
        (sender_pid, sender), (receiver_pid, receiver) = pids.items()
        sender.send("across workers")
        reply = _receive(receiver, "across workers")
        assert reply == {"message": "across workers", "sender_pid": sender_pid, "receiver_pid": receiver_pid}


def test_echo_box_in_headless_chromium(stack: Stack, tmp_path: Path) -> None:
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and chromedriver, "chromium and chromium-driver are missing: run `make tools`"
    options = Options()
    options.binary_location = chromium
    for flag in (
        "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-proxy-server", f"--user-data-dir={tmp_path}",
    ):  # fmt: skip
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    try:
        driver.get(stack.url(*WEBSOCKET, "/"))
        wait = WebDriverWait(driver, 20)
        wait.until(lambda d: d.find_element(By.ID, "ws-status").text == "open")
        assert driver.find_element(By.ID, "preset").text == "websocket"
        box = driver.find_element(By.ID, "echo-input")
        box.clear()
        box.send_keys("hello from chromium")
        driver.find_element(By.ID, "echo-send").click()
        wait.until(lambda d: d.find_element(By.ID, "echo-output").text == "hello from chromium")
    finally:
        driver.quit()
