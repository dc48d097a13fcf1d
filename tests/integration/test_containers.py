"""Single containers of each image, run the ways the README tells users to run them."""

from __future__ import annotations

import json
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from harness import DEMO_ENV, HARDENED, Container, Response, StartContainer, docker, http_get, wait_until

VARIANTS = ("production", "proxy", "websocket")
DEMO = "djserve-demo:production"


@pytest.mark.parametrize("variant", VARIANTS)
def test_image_metadata(variant: str) -> None:
    config = json.loads(docker("image", "inspect", "-f", "{{json .Config}}", f"djserve:{variant}").stdout)
    assert config["User"] == "10001:0"
    assert config["Entrypoint"] == ["tini", "--", "djserve"]
    assert config["Cmd"] == ["serve"]
    assert config["StopSignal"] == "SIGTERM"
    assert config["WorkingDir"] == "/app"
    assert config["Healthcheck"]["Test"][:2] == ["CMD", "python"]
    assert f"DJSERVE_PRESET={variant}" in config["Env"]
    assert "PYTHONUNBUFFERED=1" in config["Env"]
    assert config["Labels"]["org.opencontainers.image.title"].startswith(f"djserve ({variant}")
    assert config["Labels"]["org.opencontainers.image.licenses"] == "MIT"


def test_runtime_has_no_compiler_and_precompiled_bytecode() -> None:
    script = """
import importlib.util, json, os, shutil, sysconfig
sources = [importlib.util.find_spec(m).origin for m in ("uvicorn.main", "djserve.cli", "demo.views")]
print(json.dumps({
    "compilers": [c for c in ("gcc", "cc", "g++", "clang") if shutil.which(c)],
    "headers": os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")),
    "pip": shutil.which("pip"),
    "uncompiled": [s for s in sources if not os.path.exists(importlib.util.cache_from_source(s))],
}))
"""
    found = json.loads(docker("run", "--rm", *HARDENED, DEMO, "python", "-c", script).stdout)
    assert found == {"compilers": [], "headers": False, "pip": "/opt/venv/bin/pip", "uncompiled": []}


def test_other_commands_run_unchanged() -> None:
    assert docker("run", "--rm", *HARDENED, "djserve:production", "echo", "hi").stdout == "hi\n"


def test_manage_py_migrate_passes_through() -> None:
    env = [f"--env=DJANGO_EPHEMERAL_SECRET_KEY={DEMO_ENV['DJANGO_EPHEMERAL_SECRET_KEY']}"]
    result = docker("run", "--rm", *HARDENED, *env, DEMO, "python", "manage.py", "migrate", "--noinput")
    assert "Applying auth.0001_initial... OK" in result.stdout


def test_runs_as_uid_10001_in_group_0() -> None:
    assert docker("run", "--rm", "djserve:production", "id", "-u", "-n").stdout == "app\n"
    assert docker("run", "--rm", "djserve:production", "sh", "-c", "id -u; id -g").stdout == "10001\n0\n"


# Asked from inside, where the proxy variant (bound to 127.0.0.1) answers too.
WHOAMI = (
    "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8000/whoami').read().decode())"
)


@pytest.mark.parametrize(
    ("variant", "user"),
    [("production", None), ("proxy", None), ("websocket", None), ("production", "123456:0")],
    ids=["production", "proxy", "websocket", "arbitrary-uid"],
)
def test_hardened_container_becomes_healthy(
    start_container: StartContainer, variant: str, user: str | None
) -> None:
    options = (*HARDENED, "--user", user) if user else HARDENED
    container = start_container(f"djserve-demo:{variant}", env=DEMO_ENV, options=options)
    container.wait_healthy()
    assert json.loads(container.exec("python", "-c", WHOAMI).stdout)["preset"] == variant
    assert container.exec("id", "-u").stdout.strip() == (user or "10001:0").partition(":")[0]


def _auto_workers(*cpus: str) -> dict[str, object]:
    config = docker("run", "--rm", *cpus, "-e", "DJANGO_EPHEMERAL_SECRET_KEY=1", DEMO, "config", "--json")
    workers: dict[str, object] = json.loads(config.stdout)["workers"]
    return workers


def test_cpu_limit_sets_the_auto_worker_count() -> None:
    assert _auto_workers("--cpus", "1") == {"value": 1, "source": "preset:production"}
    # Without a limit, every CPU the container may use: more than one here, so the limit above counted.
    assert _auto_workers()["value"] == len(os.sched_getaffinity(0))


def test_wsgi_interface_serves_the_demo(start_container: StartContainer) -> None:
    container = start_container(DEMO, env={**DEMO_ENV, "DJSERVE_INTERFACE": "wsgi"})
    container.wait_healthy()
    assert http_get(container.url("/whoami")).json()["interface"] == "wsgi"
    page = http_get(container.url("/"))
    assert page.status == 200
    assert b'<dd id="interface">wsgi</dd>' in page.body


def test_limit_concurrency_answers_503_under_overload(start_container: StartContainer) -> None:
    env = {**DEMO_ENV, "UVICORN_WORKERS": "1", "UVICORN_LIMIT_CONCURRENCY": "3"}
    container = start_container(DEMO, env=env)
    container.wait_healthy()
    url = container.url("/slow?seconds=2")
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = sorted(response.status for response in pool.map(lambda _: http_get(url), range(8)))
    assert set(statuses) == {200, 503}, statuses


def test_limit_max_requests_recycles_workers_without_failures(start_container: StartContainer) -> None:
    env = {
        **DEMO_ENV,
        "UVICORN_WORKERS": "2",
        "UVICORN_LIMIT_MAX_REQUESTS": "40",
        "UVICORN_LIMIT_MAX_REQUESTS_JITTER": "10",
    }
    container = start_container(DEMO, env=env)
    container.wait_healthy()
    url = container.url("/whoami")
    deadline = time.monotonic() + 60
    pids: set[int] = set()
    failures: list[str] = []
    # The first 2 workers and 3 successors. A worker at its limit serves on until its successor answers, so
    # how many requests a generation takes depends on the machine's speed: load until then, not a count.
    generations = 5

    def client() -> None:
        # Continuous load: 4 clients, each on a new connection for every request, as a proxy would open.
        # A worker that closes connections it accepted but has not read yet fails a few in a thousand.
        for _ in range(2500):
            if len(pids) >= generations or time.monotonic() > deadline:
                return
            try:
                response = http_get(url, timeout=10)
            except OSError as error:
                failures.append(repr(error))
                continue
            if response.status != 200:
                failures.append(f"HTTP {response.status}")
            else:
                pids.add(response.json()["pid"])

    threads = [threading.Thread(target=client) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert len(pids) >= generations, pids
    assert container.inspect("{{.State.Running}}") == "true"


# One worker is served in-process, more run under uvicorn's supervisor: both must stop cleanly.
@pytest.mark.parametrize("workers", ["1", "2"])
def test_docker_stop_finishes_the_request_in_flight(start_container: StartContainer, workers: str) -> None:
    container = start_container(DEMO, env={**DEMO_ENV, "UVICORN_WORKERS": workers})
    container.wait_healthy()
    url = container.url("/slow?seconds=3")
    responses: list[Response] = []
    request = threading.Thread(target=lambda: responses.append(http_get(url, timeout=30)))
    request.start()
    time.sleep(1)  # the request is now sleeping inside the view
    started = time.monotonic()
    docker("stop", "--time", "30", container.id, timeout=60)
    stopped_after = time.monotonic() - started
    request.join(timeout=30)
    assert [r.status for r in responses] == [200]
    assert container.inspect("{{.State.ExitCode}}") == "0", container.logs()
    # It waited for the request, and ended well within the preset's 20 s graceful timeout.
    assert 1 < stopped_after < 20


# Counts processes in state Z (the field after the parenthesised command name in /proc/PID/stat).
ZOMBIES = """
import pathlib
stats = [p.read_text() for p in pathlib.Path("/proc").glob("[0-9]*/stat")]
print(sum(stat.rsplit(")", 1)[1].split()[0] == "Z" for stat in stats))
"""


def _zombies_after_orphaning(container: Container) -> int:
    container.wait_healthy()
    # The shell exits at once; its background child is orphaned and, when it exits, left to PID 1.
    container.exec("sh", "-c", "sleep 0.2 & exit 0")
    time.sleep(1)
    return int(container.exec("python", "-c", ZOMBIES).stdout)


def test_tini_reaps_orphaned_processes(start_container: StartContainer) -> None:
    with_tini = start_container(DEMO, env=DEMO_ENV)
    assert _zombies_after_orphaning(with_tini) == 0
    assert with_tini.exec("cat", "/proc/1/comm").stdout.strip() == "tini"
    # The same without tini (djserve as PID 1) and without preload leaves the zombie: the check above can
    # see one. With preload the serving process reaps every child it is given, as the workers' sub-reaper.
    no_tini = (*HARDENED, "--entrypoint", "djserve")
    no_preload = {**DEMO_ENV, "DJSERVE_PRELOAD": "false"}
    without_tini = start_container(DEMO, "serve", env=no_preload, options=no_tini)
    assert _zombies_after_orphaning(without_tini) == 1
    preloading = start_container(DEMO, "serve", env=DEMO_ENV, options=no_tini)
    assert _zombies_after_orphaning(preloading) == 0


def test_healthcheck_fails_when_the_app_does_not_answer(start_container: StartContainer) -> None:
    # A container that runs but serves nothing must not be reported healthy.
    options = (*HARDENED, "--health-start-period=1s")
    container = start_container(DEMO, "sleep", "60", env=DEMO_ENV, options=options)
    wait_until(lambda: container.health() == "unhealthy", 30, "the health status to turn unhealthy")
