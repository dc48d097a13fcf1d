"""What the chart's templates decide: settings file, checksum, probes, shutdown, security, Job, routing."""

from __future__ import annotations

import hashlib
import tomllib
from typing import Any

import helm_python
import pytest
from helmchart import CI_VALUES, load_values, render

CONFIG_FILE = "/etc/djserve/djserve.toml"
PROXY = {"preset": "proxy", "nginx": {"enabled": True}}


def _app(values: dict[str, Any] | None = None) -> dict[str, Any]:
    containers: list[dict[str, Any]] = render(values).one("Deployment")["spec"][
        "template"
    ]["spec"]["containers"]
    return next(c for c in containers if c["name"] == "app")


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _settings(values: dict[str, Any]) -> dict[str, Any]:
    return tomllib.loads(
        render(values).one("ConfigMap", "demo-djserve")["data"]["djserve.toml"]
    )


def _fails(values: dict[str, Any], message: str) -> None:
    with pytest.raises(helm_python.HelmRenderError) as error:
        render(values)
    assert message in str(error.value)


# The settings file


def test_settings_file_carries_values_with_their_toml_types() -> None:
    values: dict[str, Any] = {
        "preset": "websocket",
        "djserve": {
            "log_format": "json",
            "wait_for": ["db:5432", "redis:6379"],
            "wait_timeout": 2.5,
            "collectstatic": True,
            "app": 'shop.asgi:app "quoted" \\ ü',
        },
        "uvicorn": {
            "workers": "auto",
            "timeout-graceful-shutdown": 12,
            "no-access-log": True,
            "ws-ping-interval": 7.5,
            "header": ["X-A:1", "X-B:2"],
            "limit-max-requests": 1000000,
        },
    }
    assert _settings(values) == {
        "preset": "websocket",
        "interface": "asgi",
        **values["djserve"],
        "uvicorn": values["uvicorn"],
    }


def test_settings_file_is_mounted_where_djserve_reads_it() -> None:
    rendered = render()
    app = _app()
    assert _env(app)["DJSERVE_CONFIG"] == CONFIG_FILE
    mount = next(
        m for m in app["volumeMounts"] if CONFIG_FILE.startswith(m["mountPath"] + "/")
    )
    volume = next(
        v
        for v in rendered.one("Deployment")["spec"]["template"]["spec"]["volumes"]
        if v["name"] == mount["name"]
    )
    configmap = rendered.one("ConfigMap", volume["configMap"]["name"])
    assert CONFIG_FILE.removeprefix(mount["mountPath"] + "/") in configmap["data"]


def _checksum(values: dict[str, Any]) -> str:
    annotation: str = render(values).one("Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]["checksum/config"]
    return annotation


def test_checksum_is_the_mounted_files_hash() -> None:
    data = render().one("ConfigMap", "demo-djserve")["data"]["djserve.toml"]
    assert _checksum({}) == hashlib.sha256(data.encode()).hexdigest()


def test_checksum_changes_with_the_settings_only() -> None:
    base = {"uvicorn": {"timeout-keep-alive": 10}, "djserve": {"log_format": "json"}}
    same = _checksum(base)
    assert (
        _checksum(
            {
                **base,
                "replicas": 7,
                "image": {"tag": "v2"},
                "env": {"A": "b"},
                "resources": {"limits": {"cpu": "3"}},
            }
        )
        == same
    )
    assert _checksum({**base, "uvicorn": {"timeout-keep-alive": 11}}) != same
    assert _checksum({**base, "djserve": {"log_format": "text"}}) != same
    assert _checksum({**base, "preset": "websocket"}) != same


def test_nginx_config_has_its_own_checksum() -> None:
    rendered = render(PROXY)
    annotations = rendered.one("Deployment")["spec"]["template"]["metadata"][
        "annotations"
    ]
    conf = rendered.one("ConfigMap", "demo-djserve-nginx")["data"]["nginx.conf"]
    assert annotations["checksum/nginx"] == hashlib.sha256(conf.encode()).hexdigest()


# Environment


def test_web_pods_never_migrate_and_preset_wins_over_the_image() -> None:
    env = _env(_app({"preset": "websocket", "env": {"DJANGO_DEBUG": "0"}}))
    assert env["DJSERVE_MIGRATE"] == "false"
    assert env["DJSERVE_PRESET"] == "websocket"
    assert env["DJANGO_DEBUG"] == "0"


def test_secret_files_are_mounted_and_passed_as_file_variables() -> None:
    values = load_values(next(p for p in CI_VALUES if p.name == "secrets-values.yaml"))
    for spec in render(values).pod_specs():
        container = spec["containers"][0]
        env = _env(container)
        for entry in values["secretFiles"]:
            path = env[entry["env"] + "_FILE"]
            assert entry["env"] not in env
            mount = next(
                m
                for m in container["volumeMounts"]
                if path == f"{m['mountPath']}/{entry['key']}"
            )
            volume = next(v for v in spec["volumes"] if v["name"] == mount["name"])
            assert volume["secret"]["secretName"] == entry["secretName"]
            assert [i["key"] for i in volume["secret"]["items"]] == [entry["key"]]


# Probes and ports


def test_probes_use_djserve_paths_with_a_host_header() -> None:
    app = _app(
        {
            "djserve": {"health_path": "/healthz", "ready_path": "/readyz"},
            "probes": {"host": "probe"},
        }
    )
    paths = {
        name: app[name]["httpGet"]["path"]
        for name in ("startupProbe", "livenessProbe", "readinessProbe")
    }
    assert paths == {
        "startupProbe": "/healthz",
        "livenessProbe": "/healthz",
        "readinessProbe": "/readyz",
    }
    for name in paths:
        assert app[name]["httpGet"]["httpHeaders"] == [
            {"name": "Host", "value": "probe"}
        ]
        assert app[name]["httpGet"]["port"] == 8000


def test_uvicorn_port_moves_container_port_probes_and_service() -> None:
    rendered = render({"uvicorn": {"port": 9000}})
    app = rendered.one("Deployment")["spec"]["template"]["spec"]["containers"][0]
    assert app["ports"][0]["containerPort"] == 9000
    assert app["readinessProbe"]["httpGet"]["port"] == 9000
    assert rendered.one("Service")["spec"]["ports"][0]["targetPort"] == 9000


def test_proxy_preset_serves_and_probes_through_the_nginx_sidecar() -> None:
    rendered = render(PROXY)
    spec = rendered.one("Deployment")["spec"]["template"]["spec"]
    (nginx,) = spec["initContainers"]
    assert nginx["restartPolicy"] == "Always"
    assert nginx["ports"][0]["containerPort"] == 8080
    app = spec["containers"][0]
    assert "ports" not in app
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert app[probe]["httpGet"]["port"] == 8080
    assert rendered.one("Service")["spec"]["ports"][0]["targetPort"] == 8080
    conf = rendered.one("ConfigMap", "demo-djserve-nginx")["data"]["nginx.conf"]
    assert "server 127.0.0.1:8000;" in conf and "listen 8080;" in conf
    assert "X-Forwarded-For $proxy_add_x_forwarded_for" in conf


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"preset": "proxy"}, "preset proxy binds uvicorn to 127.0.0.1"),
        ({"nginx": {"enabled": True}}, "nginx.enabled needs preset proxy"),
        ({**PROXY, "uvicorn": {"host": "0.0.0.0"}}, "uvicorn must bind 127.0.0.1"),
        (
            {**PROXY, "uvicorn": {"port": 8080}},
            "nginx.port and uvicorn's port are both 8080",
        ),
        (
            {"preset": "websocket", "interface": "wsgi"},
            "preset websocket needs interface asgi",
        ),
    ],
)
def test_combinations_that_cannot_serve_fail(
    values: dict[str, Any], message: str
) -> None:
    _fails(values, message)


# Shutdown


def _grace(values: dict[str, Any]) -> int:
    seconds: int = render(values).one("Deployment")["spec"]["template"]["spec"][
        "terminationGracePeriodSeconds"
    ]
    return seconds


def test_grace_period_covers_prestop_and_graceful_shutdown() -> None:
    assert _grace({}) == 5 + 20 + 5
    assert _grace({"uvicorn": {"timeout-graceful-shutdown": 40}}) == 5 + 40 + 5
    assert (
        _grace({"shutdown": {"preStopSleepSeconds": 15, "marginSeconds": 2}})
        == 15 + 20 + 2
    )
    assert _grace({"terminationGracePeriodSeconds": 90}) == 90
    assert _app({})["lifecycle"]["preStop"] == {"sleep": {"seconds": 5}}
    assert "lifecycle" not in _app({"shutdown": {"preStopSleepSeconds": 0}})


def test_too_short_grace_period_fails() -> None:
    _fails(
        {"terminationGracePeriodSeconds": 29},
        "terminationGracePeriodSeconds 29 is too short",
    )


def test_default_preset_needs_a_graceful_shutdown_limit() -> None:
    _fails({"preset": "default"}, "set uvicorn.timeout-graceful-shutdown")
    assert (
        _grace({"preset": "default", "uvicorn": {"timeout-graceful-shutdown": 10}})
        == 20
    )


def test_rollout_never_lowers_capacity() -> None:
    rendered = render({"autoscaling": {"enabled": True}})
    deployment = rendered.one("Deployment")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert "replicas" not in deployment["spec"]
    assert (
        rendered.one("HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]["name"]
        == deployment["metadata"]["name"]
    )
    assert rendered.one("PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    assert render().one("Deployment")["spec"]["replicas"] == 2


# Security: every pod, hooks included


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_every_pod_meets_the_restricted_standard(values_file: Any) -> None:
    specs = render(load_values(values_file)).pod_specs()
    assert specs
    for spec in specs:
        assert spec["automountServiceAccountToken"] is False
        assert spec["enableServiceLinks"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        tmp = {v["name"] for v in spec["volumes"] if "emptyDir" in v}
        for container in spec["containers"] + spec.get("initContainers", []):
            context = container["securityContext"]
            assert context["runAsNonRoot"] is True and context["runAsUser"] > 0
            assert context["readOnlyRootFilesystem"] is True
            assert context["allowPrivilegeEscalation"] is False
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            assert any(
                m["mountPath"] == "/tmp" and m["name"] in tmp
                for m in container["volumeMounts"]
            )


# The migration Job


def test_migration_hook_needs_nothing_the_release_creates() -> None:
    rendered = render(
        load_values(next(p for p in CI_VALUES if p.name == "secrets-values.yaml"))
    )
    job = rendered.one("Job")
    assert job["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    spec = job["spec"]["template"]["spec"]
    created = {
        (o["kind"], o["metadata"]["name"]) for o in rendered.objects if o is not job
    }
    referenced = {
        ("ConfigMap", v["configMap"]["name"])
        for v in spec["volumes"]
        if "configMap" in v
    }
    referenced |= {
        ("Secret", v["secret"]["secretName"]) for v in spec["volumes"] if "secret" in v
    }
    referenced.add(("ServiceAccount", spec["serviceAccountName"]))
    container = spec["containers"][0]
    for source in container.get("envFrom", []):
        for kind, key in (("ConfigMap", "configMapRef"), ("Secret", "secretRef")):
            if key in source:
                referenced.add((kind, source[key]["name"]))
    assert referenced and not referenced & created
    assert container["command"] + container["args"] == [
        "tini",
        "--",
        "djserve",
        "python",
        "manage.py",
        "migrate",
        "--noinput",
    ]


def test_migration_job_uses_an_existing_service_account_when_given() -> None:
    job = render({"serviceAccount": {"create": False, "name": "shop"}}).one("Job")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "shop"


def test_migrations_only_renders_the_job_alone_as_a_plain_resource() -> None:
    rendered = render({"migrations": {"only": True}})
    (job,) = rendered.objects
    assert job["kind"] == "Job"
    assert "annotations" not in job["metadata"]
    assert job["spec"]["ttlSecondsAfterFinished"] == 3600


def test_migrations_can_be_off() -> None:
    assert not render({"migrations": {"enabled": False}}).all("Job")


# Traffic


def test_ingress_timeouts_suit_websockets() -> None:
    values = load_values(
        next(p for p in CI_VALUES if p.name == "websocket-values.yaml")
    )
    ingress = render(values).one("Ingress")
    annotations = ingress["metadata"]["annotations"]
    assert annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"] == "3600"
    assert annotations["nginx.ingress.kubernetes.io/proxy-send-timeout"] == "3600"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "demo-djserve", "port": {"name": "http"}}


def test_httproute_routes_to_the_service() -> None:
    """HTTPRoute is a CRD that kubernetes-validate cannot check: its shape is asserted here."""
    rendered = render(
        load_values(next(p for p in CI_VALUES if p.name == "httproute-values.yaml"))
    )
    route = rendered.one("HTTPRoute")
    service = rendered.one("Service")
    assert route["apiVersion"] == "gateway.networking.k8s.io/v1"
    assert set(route["spec"]) == {"parentRefs", "hostnames", "rules"}
    assert route["spec"]["parentRefs"] == [
        {"name": "public", "namespace": "gateway-system", "sectionName": "https"}
    ]
    (rule,) = route["spec"]["rules"]
    assert set(rule) == {"matches", "backendRefs", "timeouts"}
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    assert rule["backendRefs"] == [
        {
            "name": service["metadata"]["name"],
            "port": service["spec"]["ports"][0]["port"],
        }
    ]
    assert rule["timeouts"] == {"request": "0s"}


def test_network_policy_allows_dns_and_the_serving_port() -> None:
    policy = render({**PROXY, "networkPolicy": {"enabled": True}}).one("NetworkPolicy")
    assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
    assert policy["spec"]["ingress"] == [{"ports": [{"port": 8080, "protocol": "TCP"}]}]
    dns = policy["spec"]["egress"][0]
    assert dns == {
        "ports": [{"port": 53, "protocol": "UDP"}, {"port": 53, "protocol": "TCP"}]
    }
    assert (
        "app.kubernetes.io/component"
        not in policy["spec"]["podSelector"]["matchLabels"]
    )
