"""Render, then run: the rendered pod's containers run under Docker as the kubelet would start them.

Each container gets the rendered image, command and args, env, volumes (the rendered ConfigMaps'
files, secrets as files, emptyDirs as tmpfs) and securityContext (--user, --read-only, --cap-drop,
no-new-privileges). The rendered probes must pass against it, SIGTERM must end it with exit code 0
within the rendered grace period, and `djserve config --json` inside it must show the ConfigMap's
settings coming from the mounted file. Needs the demo images and the nginx base image: `make images`.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import selectors
import socket
import subprocess
import threading
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import pytest
from helmchart import ROOT, Rendered, render
from uvicorn.main import main as uvicorn_command

CONFIG_FILE = "/etc/djserve/djserve.toml"
ALLOWED_HOST = "shop.example.com"
# Objects the installer creates before the release, as they would exist in the cluster: Secrets that
# secretFiles name, and ConfigMaps that extraVolumes name.
SECRETS = {
    "demo-django": {"secret-key": "render-then-run-" + uuid.uuid4().hex},
    # As `kubectl create secret --from-file` stores a file: with its trailing newline.
    "demo-database": {"url": "sqlite:////tmp/migrated.sqlite3\n"},
}
# A project whose settings read the plain variables only, as most do: no <NAME>_FILE of its own.
PLAIN_ENV_SETTINGS = """
import os

SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ["DATABASE_URL"].removeprefix("sqlite:///"),
    }
}
USE_TZ = True
"""
CONFIG_MAPS = {"plain-env-project": {"plain_env_settings.py": PLAIN_ENV_SETTINGS}}
COMMON: dict[str, Any] = {
    "djserve": {"log_format": "json"},
    "env": {"DJANGO_ALLOWED_HOSTS": ALLOWED_HOST},
    "secretFiles": [
        {"env": "DJANGO_SECRET_KEY", "secretName": "demo-django", "key": "secret-key"}
    ],
    "shutdown": {"preStopSleepSeconds": 2, "marginSeconds": 3},
}


def docker(*args: str, timeout: float = 60) -> str:
    result = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, f"docker {' '.join(args)}: {result.stderr}"
    return result.stdout.strip()


def require_image(reference: str) -> None:
    found = subprocess.run(
        ["docker", "image", "inspect", reference], capture_output=True, check=False
    )
    assert found.returncode == 0, f"image {reference} is missing: run `make images`"


@dataclass
class Pod:
    """The rendered Deployment's (or Job's) pod, run container by container in one network namespace."""

    rendered: Rendered
    workdir: Path
    workload: str = "Deployment"
    prefix: str = field(default_factory=lambda: f"helm-run-{uuid.uuid4().hex[:8]}")
    started: list[str] = field(default_factory=list)
    ports: dict[int, int] = field(default_factory=dict)

    @property
    def spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = self.rendered.one(self.workload)["spec"]["template"][
            "spec"
        ]
        return spec

    def container(self, name: str) -> dict[str, Any]:
        return next(
            c
            for c in self.spec.get("initContainers", []) + self.spec["containers"]
            if c["name"] == name
        )

    def _volume_args(self, container: dict[str, Any]) -> list[str]:
        args: list[str] = []
        volumes = {v["name"]: v for v in self.spec["volumes"]}
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "emptyDir" in volume:
                args += ["--tmpfs", f"{mount['mountPath']}:mode=1777"]
                continue
            source = self.workdir / f"{container['name']}-{mount['name']}"
            source.mkdir()
            if "configMap" in volume:
                name = volume["configMap"]["name"]
                data = (
                    CONFIG_MAPS.get(name)
                    or self.rendered.one("ConfigMap", name)["data"]
                )
                for key, text in data.items():
                    (source / key).write_text(text)
            elif "secret" in volume:
                for item in volume["secret"]["items"]:
                    file = source / item["path"]
                    file.write_text(
                        SECRETS[volume["secret"]["secretName"]][item["key"]]
                    )
                    file.chmod(volume["secret"]["defaultMode"])
            else:
                raise AssertionError(f"no Docker equivalent for volume {volume}")
            args += [
                "-v",
                f"{source}:{mount['mountPath']}:ro"
                if mount.get("readOnly")
                else f"{source}:{mount['mountPath']}",
            ]
        return args

    def run(self, name: str, network_owner: str | None = None) -> str:
        """Start one container detached; the first one started owns the network and publishes the ports."""
        container = self.container(name)
        context = container["securityContext"]
        args = [
            "run",
            "-d",
            "--name",
            f"{self.prefix}-{name}",
            "--user",
            f"{context['runAsUser']}:{context['runAsGroup']}",
        ]
        if context["readOnlyRootFilesystem"]:
            args.append("--read-only")
        args += [f"--cap-drop={cap}" for cap in context["capabilities"]["drop"]]
        if context["allowPrivilegeEscalation"] is False:
            args += ["--security-opt", "no-new-privileges"]
        assert "envFrom" not in container
        for env in container.get("env", []):
            assert "value" in env, (
                f"{env['name']}: only literal values run under Docker"
            )
            args += ["-e", f"{env['name']}={env['value']}"]
        args += self._volume_args(container)
        if network_owner is None:
            for port in self.serving_ports():
                args += ["-p", f"127.0.0.1::{port}"]
        else:
            args += ["--network", f"container:{network_owner}"]
        command = container["command"] + container.get("args", [])
        args += ["--entrypoint", command[0], container["image"], *command[1:]]
        docker(*args)
        self.started.append(f"{self.prefix}-{name}")
        if network_owner is None:
            for port in self.serving_ports():
                self.ports[port] = int(
                    docker("port", f"{self.prefix}-{name}", f"{port}/tcp")
                    .splitlines()[0]
                    .rsplit(":", 1)[1]
                )
        return f"{self.prefix}-{name}"

    def serving_ports(self) -> list[int]:
        """Ports the kubelet and the Service reach: every containerPort in the pod."""
        containers = self.spec.get("initContainers", []) + self.spec["containers"]
        return [p["containerPort"] for c in containers for p in c.get("ports", [])]

    def get(
        self,
        port: int,
        path: str,
        host: str,
        headers: dict[str, str] | None = None,
        timeout: float = 5,
    ) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection(
            "127.0.0.1", self.ports[port], timeout=timeout
        )
        try:
            connection.request("GET", path, headers={"Host": host, **(headers or {})})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def probe(self, probe: dict[str, Any]) -> bool:
        """One kubelet httpGet probe: success is a status from 200 to 399 within timeoutSeconds."""
        action = probe["httpGet"]
        headers = {h["name"]: h["value"] for h in action.get("httpHeaders", [])}
        try:
            # Without a Host header the kubelet sends the pod's address.
            status, _ = self.get(
                action["port"],
                action["path"],
                headers.pop("Host", "127.0.0.1"),
                headers,
                timeout=probe["timeoutSeconds"],
            )
        except OSError:
            return False
        return 200 <= status < 400

    def wait_probe(self, probe: dict[str, Any]) -> None:
        """Probe every periodSeconds; fail after failureThreshold misses, as the kubelet would."""
        for _ in range(probe["failureThreshold"]):
            if self.probe(probe):
                return
            time.sleep(probe["periodSeconds"])
        raise AssertionError(f"probe never passed: {probe} ({self.logs()})")

    def logs(self) -> str:
        return "\n".join(
            subprocess.run(
                ["docker", "logs", "--tail", "30", c],
                capture_output=True,
                text=True,
                check=False,
            ).stderr
            for c in self.started
        )

    def terminate(self, name: str) -> tuple[int, float]:
        """SIGTERM as the kubelet sends it; the exit code and seconds to exit, bounded by the grace period."""
        grace = self.spec["terminationGracePeriodSeconds"]
        container = f"{self.prefix}-{name}"
        started = time.monotonic()
        docker("kill", "--signal", "TERM", container)
        code = int(docker("wait", container, timeout=grace + 5))
        return code, time.monotonic() - started

    def remove(self) -> None:
        for container in reversed(self.started):
            subprocess.run(
                ["docker", "rm", "-f", container],
                capture_output=True,
                check=False,
                timeout=60,
            )


@pytest.fixture
def pod_factory(tmp_path: Path) -> Iterator[Any]:
    pods: list[Pod] = []

    def make(values: dict[str, Any]) -> Pod:
        tmp_path.chmod(0o755)
        pod = Pod(render(values), tmp_path)
        pods.append(pod)
        return pod

    yield make
    for pod in pods:
        pod.remove()


def assert_probes_pass(pod: Pod, container: dict[str, Any]) -> None:
    pod.wait_probe(container["startupProbe"])
    pod.wait_probe(container["readinessProbe"])
    for _ in range(3):
        assert pod.probe(container["livenessProbe"]), pod.logs()
        assert pod.probe(container["readinessProbe"]), pod.logs()


def setting_name(flag: str) -> tuple[str, bool]:
    """A [uvicorn] key of djserve.toml as uvicorn's setting name, and whether the flag negates it."""
    for param in uvicorn_command.params:
        if isinstance(param, click.Option):
            if f"--{flag}" in param.opts:
                return str(param.name), False
            if f"--{flag}" in param.secondary_opts:
                return str(param.name), True
    raise AssertionError(f"{flag} is no uvicorn option")


def assert_config_comes_from_the_configmap(pod: Pod, container_name: str) -> None:
    toml = tomllib.loads(
        pod.rendered.one("ConfigMap", "demo-djserve")["data"]["djserve.toml"]
    )
    effective = json.loads(
        docker("exec", f"{pod.prefix}-{container_name}", "djserve", "config", "--json")
    )
    source = f"file:{CONFIG_FILE}"
    uvicorn_settings = toml.pop("uvicorn")
    assert uvicorn_settings, "the test values must set uvicorn options"
    for flag, value in uvicorn_settings.items():
        name, negated = setting_name(flag)
        expected = (not value) if negated else value
        assert effective[name] == {"value": expected, "source": source}, name
    preset = toml.pop("preset")
    # The image's DJSERVE_PRESET outranks the file, so the chart passes the preset as env too.
    assert effective["preset"] == {"value": preset, "source": "env:DJSERVE_PRESET"}
    for name, value in toml.items():
        assert effective[name] == {"value": value, "source": source}, name


def slow_request(pod: Pod, port: int, result: dict[str, Any]) -> None:
    try:
        result["status"], result["body"] = pod.get(
            port, "/slow?seconds=3", ALLOWED_HOST, timeout=20
        )
    except OSError as error:
        result["error"] = error


def terminate_with_request_in_flight(pod: Pod, port: int, name: str) -> None:
    result: dict[str, Any] = {}
    request = threading.Thread(target=slow_request, args=(pod, port, result))
    request.start()
    time.sleep(1)
    code, seconds = pod.terminate(name)
    request.join(timeout=20)
    assert code == 0, pod.logs()
    assert seconds < pod.spec["terminationGracePeriodSeconds"]
    assert result.get("status") == 200, result


def test_production_pod_runs_as_rendered(pod_factory: Any) -> None:
    values = {
        **COMMON,
        "image": {
            "repository": "djserve-demo",
            "tag": "production",
            "pullPolicy": "Never",
        },
        "preset": "production",
        "uvicorn": {
            "workers": 2,
            "timeout-graceful-shutdown": 6,
            "timeout-keep-alive": 9,
            "limit-concurrency": 100,
            "no-date-header": True,
        },
    }
    require_image("djserve-demo:production")
    pod: Pod = pod_factory(values)
    assert pod.spec["terminationGracePeriodSeconds"] == 2 + 6 + 3
    app = pod.container("app")
    pod.run("app")

    assert_probes_pass(pod, app)
    # The probes' Host header is not in ALLOWED_HOSTS: Django refuses it, djserve's probe paths do not.
    port = app["readinessProbe"]["httpGet"]["port"]
    assert (
        pod.get(
            port, "/whoami", app["readinessProbe"]["httpGet"]["httpHeaders"][0]["value"]
        )[0]
        == 400
    )
    status, body = pod.get(port, "/whoami", ALLOWED_HOST)
    assert status == 200 and json.loads(body)["preset"] == "production"

    assert_config_comes_from_the_configmap(pod, "app")
    terminate_with_request_in_flight(pod, port, "app")


def nginx_image() -> tuple[str, str]:
    """The nginx image `make base-images` chose (.env NGINX_IMAGE), as repository and tag."""
    env_file = ROOT / ".env"
    assert env_file.exists(), ".env is missing: run `make images`"
    entries = dict(
        line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line
    )
    reference = os.environ.get("NGINX_IMAGE", entries["NGINX_IMAGE"])
    repository, _, tag = reference.rpartition(":")
    assert "/" not in tag, reference
    return repository, tag


def start_proxy_pod(pod_factory: Any) -> Pod:
    """The proxy preset's pod: nginx first (it owns the network namespace here), then uvicorn."""
    repository, tag = nginx_image()
    bridge = docker(
        "network", "inspect", "bridge", "--format", "{{(index .IPAM.Config 0).Subnet}}"
    )
    values = {
        **COMMON,
        "image": {"repository": "djserve-demo", "tag": "proxy", "pullPolicy": "Never"},
        "preset": "proxy",
        "uvicorn": {"timeout-graceful-shutdown": 6, "workers": 1},
        # Published ports arrive from Docker's bridge network: it stands for the ingress controller's.
        "nginx": {
            "enabled": True,
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "realIpFrom": [bridge, "127.0.0.1/32"],
        },
    }
    require_image("djserve-demo:proxy")
    require_image(f"{repository}:{tag}")
    pod: Pod = pod_factory(values)
    # Native sidecar order: nginx starts first (and owns the network namespace here), then uvicorn.
    owner = pod.run("nginx")
    pod.run("app", network_owner=owner)
    assert_probes_pass(pod, pod.container("app"))
    return pod


def test_proxy_pod_serves_through_the_nginx_sidecar(pod_factory: Any) -> None:
    pod = start_proxy_pod(pod_factory)
    nginx, app = pod.container("nginx"), pod.container("app")
    assert pod.probe(nginx["livenessProbe"])
    port = app["readinessProbe"]["httpGet"]["port"]
    status, body = pod.get(
        port,
        "/whoami",
        ALLOWED_HOST,
        {"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https"},
    )
    assert status == 200, body
    whoami = json.loads(body)
    assert (whoami["client"], whoami["scheme"], whoami["preset"]) == (
        "203.0.113.7",
        "https",
        "proxy",
    )

    assert_config_comes_from_the_configmap(pod, "app")
    # uvicorn drains first while the sidecar keeps relaying; nginx stops after it, as the kubelet orders it.
    terminate_with_request_in_flight(pod, port, "app")
    code, _ = pod.terminate("nginx")
    assert code == 0, pod.logs()


def nginx_worker_open_files(pod: Pod) -> int:
    """The soft open-files limit of nginx's worker process, from /proc inside the sidecar."""
    limits = docker(
        "exec",
        f"{pod.prefix}-nginx",
        "sh",
        "-c",
        'for p in /proc/[0-9]*; do grep -qa "worker process" "$p/cmdline" && cat "$p/limits"; done',
    )
    found = re.search(r"^Max open files\s+(\d+)", limits, re.MULTILINE)
    assert found, limits
    return int(found[1])


def nginx_directive(conf: str, name: str) -> str:
    found = re.search(rf"^\s*{name} ([^;]+);", conf, re.MULTILINE)
    assert found, name
    return found[1]


def test_proxy_sidecar_holds_trickling_clients_and_cuts_them_off(
    pod_factory: Any,
) -> None:
    """1,500 clients trickling a request head: nginx holds them all, answers probes, then closes them."""
    pod = start_proxy_pod(pod_factory)
    app = pod.container("app")
    conf = pod.rendered.one("ConfigMap", "demo-djserve-nginx")["data"]["nginx.conf"]
    connections = int(nginx_directive(conf, "worker_connections"))
    header_timeout = int(
        nginx_directive(conf, "client_header_timeout").removesuffix("s")
    )
    assert nginx_worker_open_files(pod) > connections

    port = pod.ports[app["readinessProbe"]["httpGet"]["port"]]
    selector = selectors.DefaultSelector()
    clients = []
    try:
        for _ in range(1500):
            client = socket.create_connection(("127.0.0.1", port), timeout=10)
            client.sendall(b"GET /sync HTTP/1.1\r\nHost: shop.example.com\r\nX-A: ")
            client.setblocking(False)
            selector.register(client, selectors.EVENT_READ)
            clients.append(client)
        started = time.monotonic()
        assert pod.probe(app["readinessProbe"]), pod.logs()
        assert pod.probe(app["livenessProbe"]), pod.logs()

        # Each is closed once its head is late; the margin is for a loaded machine.
        open_clients = set(clients)
        client_of = {client.fileno(): client for client in clients}
        deadline = started + header_timeout + 15
        while open_clients and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                try:
                    closed = client_of[key.fd].recv(4096) == b""
                except ConnectionResetError:
                    closed = True
                if closed:
                    selector.unregister(key.fileobj)
                    open_clients.discard(client_of[key.fd])
        assert not open_clients, f"{len(open_clients)} of 1500 still open"
        assert time.monotonic() - started > header_timeout - 1
    finally:
        selector.close()
        for client in clients:
            client.close()
    logs = subprocess.run(
        ["docker", "logs", f"{pod.prefix}-nginx"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "worker_connections are not enough" not in logs.stdout + logs.stderr


def test_extended_pod_runs_as_rendered(pod_factory: Any) -> None:
    """Extension values reach the running container: an extra volume, merged security contexts."""
    values = {
        **COMMON,
        "image": {
            "repository": "djserve-demo",
            "tag": "production",
            "pullPolicy": "Never",
        },
        "uvicorn": {"workers": 1, "timeout-graceful-shutdown": 6},
        "commonLabels": {"team": "shop"},
        "extraVolumes": [{"name": "cache", "emptyDir": {"sizeLimit": "64Mi"}}],
        "extraVolumeMounts": [{"name": "cache", "mountPath": "/var/cache/shop"}],
        "securityContext": {
            "runAsUser": 10001,
            "runAsGroup": 0,
            "appArmorProfile": {"type": "RuntimeDefault"},
        },
        "podSecurityContext": {"fsGroupChangePolicy": "OnRootMismatch"},
    }
    require_image("djserve-demo:production")
    pod: Pod = pod_factory(values)
    app = pod.container("app")
    assert app["securityContext"]["readOnlyRootFilesystem"] is True
    name = pod.run("app")
    assert_probes_pass(pod, app)

    docker("exec", name, "sh", "-c", "echo cached > /var/cache/shop/entry")
    assert docker("exec", name, "cat", "/var/cache/shop/entry") == "cached"
    refused = subprocess.run(
        ["docker", "exec", name, "touch", "/etc/djserve-was-here"],
        capture_output=True,
        check=False,
    )
    assert refused.returncode != 0
    # The chart leaves the interface to the preset: it is not in the mounted file.
    effective = json.loads(docker("exec", name, "djserve", "config", "--json"))
    assert effective["interface"]["source"] != f"file:{CONFIG_FILE}"
    assert_config_comes_from_the_configmap(pod, "app")


def test_migration_job_reads_secret_files_as_plain_variables(tmp_path: Path) -> None:
    """The Job's command is passed through by djserve, which first turns every secretFiles entry's
    <NAME>_FILE into <NAME>: a project that reads only DATABASE_URL migrates."""
    values = {
        **COMMON,
        "image": {
            "repository": "djserve-demo",
            "tag": "production",
            "pullPolicy": "Never",
        },
        "migrations": {"only": True},
        "env": {
            "DJANGO_SETTINGS_MODULE": "plain_env_settings",
            "PYTHONPATH": "/srv/project",
        },
        "secretFiles": [
            *COMMON["secretFiles"],
            {"env": "DATABASE_URL", "secretName": "demo-database", "key": "url"},
        ],
        "extraVolumes": [
            {"name": "project", "configMap": {"name": "plain-env-project"}}
        ],
        "extraVolumeMounts": [
            {"name": "project", "mountPath": "/srv/project", "readOnly": True}
        ],
    }
    require_image("djserve-demo:production")
    tmp_path.chmod(0o755)
    job = Pod(render(values), tmp_path, workload="Job")
    migrate = job.container("migrate")
    env = {e["name"] for e in migrate["env"]}
    # Only the files' paths are in the spec, never the values.
    assert {"DATABASE_URL_FILE", "DJANGO_SECRET_KEY_FILE"} <= env
    assert not {"DATABASE_URL", "DJANGO_SECRET_KEY"} & env
    try:
        name = job.run("migrate")
        code = int(docker("wait", name, timeout=120))
        logs = subprocess.run(
            ["docker", "logs", name], capture_output=True, text=True, check=False
        )
    finally:
        job.remove()
    output = logs.stdout + logs.stderr
    assert code == 0, output
    assert "Applying auth.0001_initial... OK" in output
