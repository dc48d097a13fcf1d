"""The compose staging stack: each variant with its real neighbours (nginx in front, redis behind)."""

from __future__ import annotations

import asyncio
import errno
import json
import re
import shutil
import threading
import time
import urllib.parse
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from socket import create_connection

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from harness import Response, Stack, docker, http_get, load, request, wait_until

# Published app ports: (service, container port) as clients reach each variant.
PRODUCTION = ("web", 8000)
PROXY = ("web-proxy", 8080)  # nginx, in web-proxy's network namespace
PROXY_TLS_EDGE = ("web-proxy", 8443)  # nginx's "behind a TLS-terminating load balancer" port
WEBSOCKET = ("web-ws", 8000)
PROMETHEUS = ("prometheus", 9090)


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
    # Every preset serves hybrid: /whoami is a sync view, so it took the WSGI path.
    assert response.json()["served_by"] == "hybrid"
    assert response.json()["interface"] == "wsgi"


@pytest.mark.parametrize("view", ["sync", "async"])
def test_sync_and_async_views(stack: Stack, view: str) -> None:
    response = http_get(stack.url(*PRODUCTION, f"/{view}"))
    assert response.status == 200
    assert response.json()["view"] == view


@pytest.mark.parametrize(
    ("service", "vendor"), [(PRODUCTION, "postgresql"), (WEBSOCKET, "postgresql"), (PROXY, "sqlite")]
)
def test_db_view_on_each_services_database(stack: Stack, service: tuple[str, int], vendor: str) -> None:
    response = http_get(stack.url(*service, "/db"))
    assert response.status == 200
    assert response.json() == {**response.json(), "ok": True, "vendor": vendor}


def test_migrate_service_applied_the_migrations_to_postgresql(stack: Stack) -> None:
    query = "SELECT count(*) FROM django_migrations WHERE app = 'auth'"
    applied = stack.exec("postgres", "psql", "-U", "djserve", "-d", "djserve", "-Atc", query)
    assert applied.returncode == 0, applied.stderr
    assert int(applied.stdout) >= 12


def _prometheus_sum(stack: Stack, query: str) -> float:
    url = stack.url(*PROMETHEUS, "/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    answer = http_get(url).json()
    assert answer["status"] == "success", answer
    return sum(float(sample["value"][1]) for sample in answer["data"]["result"])


def test_prometheus_counts_the_requests_of_each_service(stack: Stack) -> None:
    services = {"web": PRODUCTION, "web-proxy": PROXY, "web-ws": WEBSOCKET}
    query = 'sum by (service) (djserve_requests_total{{service="{}"}})'
    before = {name: _prometheus_sum(stack, query.format(name)) for name in services}
    for service in services.values():
        assert Counter(load(stack.url(*service, "/sync"), requests=40, connections=4).statuses) == {200: 40}
    # Scraped every 2 s; each target answers with the sum over its workers.
    for name in services:
        wait_until(
            lambda name=name: _prometheus_sum(stack, query.format(name)) >= before[name] + 40,
            30, f"Prometheus to count 40 more requests of {name}", pause=1,
        )  # fmt: skip


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


def _one_socket_per_worker(stack: Stack, sockets: ExitStack) -> dict[int, ClientConnection]:
    """Broadcast sockets until both workers of web-ws hold one: {worker pid: socket}."""
    pids: dict[int, ClientConnection] = {}
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
            return pids
    raise AssertionError("every connection landed on one worker")


def test_broadcast_reaches_a_client_on_another_worker(stack: Stack) -> None:
    with ExitStack() as sockets:
        pids = _one_socket_per_worker(stack, sockets)
        (sender_pid, sender), (receiver_pid, receiver) = pids.items()
        sender.send("across workers")
        reply = _receive(receiver, "across workers")
        assert reply == {"message": "across workers", "sender_pid": sender_pid, "receiver_pid": receiver_pid}


def _broadcast(url: str, message: str) -> Response:
    body = json.dumps({"message": message}).encode()
    return request(url, "POST", body, {"Content-Type": "application/json"})


def _redis_clients(stack: Stack) -> int:
    info = stack.exec("redis", "redis-cli", "info", "clients").stdout
    found = re.search(r"^connected_clients:(\d+)", info, re.MULTILINE)
    assert found, info
    return int(found.group(1))


def _reaches_both_workers(stack: Stack, message: str) -> None:
    with ExitStack() as sockets:
        pids = _one_socket_per_worker(stack, sockets)
        answer = _broadcast(stack.url(*WEBSOCKET, "/broadcast"), message)
        assert answer.status == 200, answer.body
        sender_pid = answer.json()["sender_pid"]
        for pid, socket in pids.items():
            assert _receive(socket, message) == {
                "message": message,
                "sender_pid": sender_pid,
                "receiver_pid": pid,
            }


def test_sync_view_broadcast_reaches_both_workers_and_redis_connections_stay_bounded(stack: Stack) -> None:
    _reaches_both_workers(stack, "from a sync view")
    url = stack.url(*WEBSOCKET, "/broadcast")
    failures: list[int] = []

    def client(index: int) -> None:
        for number in range(250):
            status = _broadcast(url, f"load {index}.{number}").status
            if status != 200:
                failures.append(status)

    # 1,000 broadcasts from 4 clients at once.
    threads = [threading.Thread(target=client, args=(index,)) for index in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    # Each worker reuses one publishing pool, which at most `threads` broadcasts use at once, and one
    # subscriber; a pool per call would leave hundreds. redis-cli itself counts as one.
    config = json.loads(stack.exec("web-ws", "djserve", "config", "--json").stdout)
    threads, workers = config["threads"]["value"], config["workers"]["value"]
    assert workers == 2
    assert _redis_clients(stack) <= workers * (threads + 1) + 1
    _reaches_both_workers(stack, "after 1,000 broadcasts")


async def _hold_connections(port: int, count: int, seconds: int) -> None:
    """Opens `count` connections to 127.0.0.1:port, then trickles a header line on each every second
    for `seconds`, never finishing the request head."""
    connections = []
    for _ in range(count):
        _, writer = await asyncio.open_connection("127.0.0.1", port)
        connections.append(writer)
    lines = [b"GET /sync HTTP/1.1\r\n", *(b"X-Trickle: %d\r\n" % n for n in range(seconds))]
    for line in lines:
        for writer in connections:
            if not writer.is_closing():
                writer.write(line)
        await asyncio.sleep(1)
    for writer in connections:
        writer.close()


def test_nginx_sidecar_holds_1500_trickling_connections_and_keeps_serving(stack: Stack) -> None:
    port = stack.services.port_for(*PROXY)
    statuses: dict[str, list[int]] = {"/-/health": [], "/sync": []}
    holding = threading.Event()

    def hold() -> None:
        try:
            asyncio.run(_hold_connections(port, 1500, seconds=4))
        finally:
            holding.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(2)  # every connection is open and trickling by now
    for _ in range(10):
        for path, got in statuses.items():
            got.append(http_get(stack.url(*PROXY, path), timeout=10).status)
    holding.wait(timeout=60)
    holder.join(timeout=10)
    assert statuses == {"/-/health": [200] * 10, "/sync": [200] * 10}
    logs = stack.compose("logs", "--no-log-prefix", "nginx").stdout
    assert "worker_connections are not enough" not in logs


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


def test_nginx_closes_a_connection_without_a_request_head_within_5_seconds(stack: Stack) -> None:
    port = stack.services.port_for(*PROXY)
    with create_connection(("127.0.0.1", port), timeout=20) as client:
        client.sendall(b"GET /sync HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # the head never ends
        started = time.monotonic()
        while client.recv(4096):  # nginx may answer 408 before it closes
            pass
        closed_after = time.monotonic() - started
    # nginx's client_header_timeout (5 s), well before djserve's own header_timeout behind it.
    assert 4 < closed_after < 9


WORKER_MEMORY = re.compile(r'^djserve_worker_memory_bytes\{(?=[^}]*kind="uss")[^}]*pid="(\d+)"', re.MULTILINE)
KILLED_RESTARTS = re.compile(r'^djserve_worker_restarts_total\{reason="killed"\} (\d+)', re.MULTILINE)


def test_a_worker_killed_with_sigkill_is_replaced_and_counted(stack: Stack) -> None:
    """The production preset preloads: a worker killed outright is forked anew from the preloaded process,
    the site keeps answering, and /-/metrics says why a worker was replaced."""
    metrics_url = stack.url(*PRODUCTION, "/-/metrics")

    def metrics() -> str:
        return http_get(metrics_url).body.decode()

    wait_until(lambda: len(WORKER_MEMORY.findall(metrics())) == 2, 30, "both workers' memory in /-/metrics")
    before = set(WORKER_MEMORY.findall(metrics()))
    killed_before = int(next(iter(KILLED_RESTARTS.findall(metrics())), "0"))
    victim = sorted(before)[0]
    kill = f"import os, signal; os.kill({victim}, signal.SIGKILL)"
    assert stack.exec("web", "python", "-c", kill).returncode == 0
    for _ in range(20):  # the other worker answers while the victim is replaced
        assert http_get(stack.url(*PRODUCTION, "/sync")).status == 200

    def replaced() -> bool:
        found = metrics()
        pids = set(WORKER_MEMORY.findall(found))
        killed = int(next(iter(KILLED_RESTARTS.findall(found)), "0"))
        return len(pids) == 2 and victim not in pids and killed == killed_before + 1

    wait_until(replaced, 30, f"worker {victim} replaced and counted as killed")
