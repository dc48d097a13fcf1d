"""What the chart's templates decide: settings file, checksum, probes, shutdown, security, Job, routing,
metrics and the extension values."""

from __future__ import annotations

import difflib
import hashlib
import json
import re
import tomllib
from typing import Any

import helm_python
import pytest
import yaml
from djserve.config import presets
from djserve.config.options import PRESETS, REGISTRY
from djserve.serve import draining
from helmchart import CHART, CI_VALUES, ROOT, load_values, render

CONFIG_FILE = "/etc/djserve/djserve.toml"
PROXY = {"preset": "proxy", "nginx": {"enabled": True}}
SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())
# The containers the chart itself defines; the others come from the values.
CHART_CONTAINERS = {"app", "nginx", "migrate"}


def _ci(name: str) -> dict[str, Any]:
    return load_values(next(p for p in CI_VALUES if p.name == name))


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
        "interface": "hybrid",
        "djserve": {
            "log_format": "json",
            "wait_for": ["db:5432", "redis:6379"],
            "wait_timeout": 2.5,
            "collectstatic": True,
            "app": 'shop.asgi:app "quoted" \\ ü',
            "threads": 12,
            "header_timeout": 7.5,
            "max_body_bytes": 0,
            "serve_static": False,
            "metrics_path": "/-/prometheus",
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
        "interface": "hybrid",
        **values["djserve"],
        "uvicorn": values["uvicorn"],
    }


def test_interface_is_left_to_the_preset_unless_set() -> None:
    """The production and websocket presets choose hybrid: the chart must not pin another."""
    assert "interface" not in _settings({})
    assert _settings({"interface": "wsgi"})["interface"] == "wsgi"


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


def test_probes_stay_on_the_bare_path_under_a_root_path() -> None:
    """djserve answers its probe paths on the bare path under any root_path, so the kubelet keeps them."""
    for values in (
        {"uvicorn": {"root-path": "/api"}},
        {"env": {"UVICORN_ROOT_PATH": "/api"}},
    ):
        app = _app(values)
        assert (
            app["livenessProbe"]["httpGet"]["path"] == REGISTRY["health_path"].default
        )
        assert (
            app["readinessProbe"]["httpGet"]["path"] == REGISTRY["ready_path"].default
        )


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
            "preset websocket needs interface auto, asgi or hybrid",
        ),
        (
            {
                "djserve": {"metrics": False},
                "metrics": {"serviceMonitor": {"enabled": True}},
            },
            "metrics.serviceMonitor.enabled needs djserve's metrics",
        ),
        (
            {"djserve": {"metrics": False}, "metrics": {"scrapeAnnotations": True}},
            "metrics.scrapeAnnotations needs djserve's metrics",
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


@pytest.mark.parametrize("preset", [p for p in PRESETS if p != "default"])
def test_grace_period_follows_the_presets_graceful_timeout(preset: str) -> None:
    """The chart's copy of each preset's timeout-graceful-shutdown is presets.toml's."""
    graceful = presets.table(preset)["uvicorn"]["timeout-graceful-shutdown"]
    values: dict[str, Any] = {"preset": preset}
    if preset == "proxy":
        values = PROXY
    assert _grace(values) == 5 + graceful + 5


def test_default_preset_has_no_graceful_timeout_to_copy() -> None:
    assert "timeout-graceful-shutdown" not in presets.table("default").get(
        "uvicorn", {}
    )


def test_smallest_margin_still_covers_the_drain() -> None:
    """A stopping worker drains before uvicorn's graceful shutdown starts: the margin must cover it."""
    smallest = SCHEMA["properties"]["shutdown"]["properties"]["marginSeconds"][
        "minimum"
    ]
    graceful = presets.table("production")["uvicorn"]["timeout-graceful-shutdown"]
    grace = _grace({"shutdown": {"preStopSleepSeconds": 5, "marginSeconds": smallest}})
    assert grace > 5 + draining.DRAIN_SECONDS + graceful


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
            if container["name"] in CHART_CONTAINERS:
                assert any(
                    m["mountPath"] == "/tmp" and m["name"] in tmp
                    for m in container["volumeMounts"]
                )


def _security(values: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    spec = render(values).one("Deployment")["spec"]["template"]["spec"]
    return spec["securityContext"], spec["containers"][0]["securityContext"]


def test_security_context_overrides_replace_defaults_key_by_key() -> None:
    pod, app = _security(
        {
            "securityContext": {
                "runAsUser": 20000,
                "runAsGroup": 20000,
                "readOnlyRootFilesystem": False,
                "appArmorProfile": {"type": "RuntimeDefault"},
            },
            "podSecurityContext": {"fsGroup": 30000, "supplementalGroups": [40000]},
        }
    )
    # A false given over a true default sticks: no merge that skips "empty" values.
    assert app["readOnlyRootFilesystem"] is False
    assert (app["runAsUser"], app["runAsGroup"]) == (20000, 20000)
    assert app["appArmorProfile"] == {"type": "RuntimeDefault"}
    assert app["capabilities"] == {"drop": ["ALL"]}
    assert app["allowPrivilegeEscalation"] is False
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (
        20000,
        20000,
        30000,
    )
    assert pod["supplementalGroups"] == [40000]
    assert pod["runAsNonRoot"] is True


def test_user_containers_get_the_restricted_defaults_beneath_their_own() -> None:
    sidecar = {
        "name": "proxy",
        "image": "proxy:1",
        "restartPolicy": "Always",
        "securityContext": {"runAsUser": 65532, "runAsGroup": 65532},
    }
    spec = render(
        {
            **PROXY,
            "initContainers": [sidecar],
            "extraContainers": [{"name": "x", "image": "x:1"}],
        }
    ).one("Deployment")["spec"]["template"]["spec"]
    nginx, proxy = spec["initContainers"]
    assert (nginx["name"], proxy["name"]) == ("nginx", "proxy")
    extra = spec["containers"][1]
    assert (
        proxy["securityContext"]["runAsUser"],
        extra["securityContext"]["runAsUser"],
    ) == (
        65532,
        10001,
    )
    for container in (proxy, extra):
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


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


def test_ingress_annotations_come_only_from_values() -> None:
    values = _ci("websocket-values.yaml")
    ingress = render(values).one("Ingress")
    assert ingress["metadata"]["annotations"] == values["ingress"]["annotations"]
    bare = render({"ingress": {"enabled": True, "hosts": []}}).one("Ingress")
    assert "annotations" not in bare["metadata"]
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


# Extending the chart


def _metadata_and_pod_metadata(rendered: Any) -> list[tuple[str, dict[str, Any]]]:
    found = []
    for obj in rendered.objects:
        found.append((f"{obj['kind']} {obj['metadata']['name']}", obj["metadata"]))
        if "template" in obj.get("spec", {}):
            found.append(
                (f"pods of {obj['kind']}", obj["spec"]["template"]["metadata"])
            )
    return found


def test_common_labels_and_annotations_are_on_every_object_and_pod() -> None:
    values = _ci("extensions-values.yaml")
    values.update(PROXY)
    values["metrics"] = {"serviceMonitor": {"enabled": True}}
    values["autoscaling"] = {"enabled": True}
    values["networkPolicy"] = {"enabled": True}
    values["httpRoute"] = {"enabled": True, "parentRefs": [{"name": "public"}]}
    rendered = render(values)
    # One object of every template the chart has.
    templates = {p.name for p in (CHART / "templates").glob("*.yaml")}
    assert {path.rsplit("/", 1)[1] for path in rendered.manifests} == templates
    for where, metadata in _metadata_and_pod_metadata(rendered):
        assert values["commonLabels"].items() <= metadata["labels"].items(), where
        assert values["commonAnnotations"].items() <= metadata["annotations"].items(), (
            where
        )
    job = rendered.one("Job")["metadata"]["annotations"]
    assert job["helm.sh/hook"] == "pre-install,pre-upgrade"
    ingress = rendered.one("Ingress")["metadata"]["annotations"]
    assert values["ingress"]["annotations"].items() <= ingress.items()


def test_common_labels_never_reach_selectors() -> None:
    """Selectors are immutable: a label added later must not orphan the Deployment's pods."""
    rendered = render({"commonLabels": {"team": "shop"}})
    deployment = rendered.one("Deployment")
    assert "team" not in deployment["spec"]["selector"]["matchLabels"]
    assert "team" not in rendered.one("Service")["spec"]["selector"]
    assert (
        "team"
        not in rendered.one("PodDisruptionBudget")["spec"]["selector"]["matchLabels"]
    )


def test_extra_volumes_and_containers_reach_their_pods() -> None:
    values = _ci("extensions-values.yaml")
    rendered = render(values)
    web = rendered.one("Deployment")["spec"]["template"]["spec"]
    job = rendered.one("Job")["spec"]["template"]["spec"]
    (volume,) = values["extraVolumes"]
    (mount,) = values["extraVolumeMounts"]
    (sidecar,) = values["initContainers"]
    (extra,) = values["extraContainers"]
    for spec, app in ((web, "app"), (job, "migrate")):
        assert volume in spec["volumes"]
        container = next(c for c in spec["containers"] if c["name"] == app)
        assert mount in container["volumeMounts"]
        (init,) = spec["initContainers"]
        assert {k: v for k, v in init.items() if k != "securityContext"} == {
            k: v for k, v in sidecar.items() if k != "securityContext"
        }
        assert init["restartPolicy"] == "Always"
    assert [c["name"] for c in web["containers"]] == ["app", extra["name"]]
    # A Job's pod finishes when its containers do: a long-running extra container would hold it.
    assert [c["name"] for c in job["containers"]] == ["migrate"]


# Metrics


def test_service_monitor_scrapes_the_services_http_port_on_the_metrics_path() -> None:
    """ServiceMonitor is a CRD that kubernetes-validate cannot check: its shape is asserted here."""
    values = _ci("metrics-values.yaml")
    rendered = render(values)
    monitor = rendered.one("ServiceMonitor")
    service = rendered.one("Service")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["namespace"] == service["metadata"]["namespace"]
    assert (
        values["metrics"]["serviceMonitor"]["labels"].items()
        <= monitor["metadata"]["labels"].items()
    )
    assert set(monitor["spec"]) == {"selector", "endpoints"}
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint == {
        "port": service["spec"]["ports"][0]["name"],
        "path": values["djserve"]["metrics_path"],
        "interval": "15s",
        "scrapeTimeout": "5s",
    }


def test_service_monitor_defaults_to_djserves_metrics_path() -> None:
    monitor = render({"metrics": {"serviceMonitor": {"enabled": True}}}).one(
        "ServiceMonitor"
    )
    assert REGISTRY["metrics"].default is True
    assert monitor["spec"]["endpoints"][0]["path"] == REGISTRY["metrics_path"].default
    assert monitor["spec"]["endpoints"][0]["interval"] == "30s"
    assert not render().all("ServiceMonitor")


def test_scrape_annotations_point_at_the_serving_port_and_metrics_path() -> None:
    for values, port in (({}, "8000"), (PROXY, "8080")):
        annotations = render({**values, "metrics": {"scrapeAnnotations": True}}).one(
            "Deployment"
        )["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == port
        assert annotations["prometheus.io/path"] == REGISTRY["metrics_path"].default
    plain = render().one("Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not any(key.startswith("prometheus.io/") for key in plain)


# The nginx sidecar


def _nginx(values: dict[str, Any]) -> dict[str, str]:
    """nginx.conf's simple directives for clients, name to argument: the upstream block is left out."""
    conf = render({**PROXY, **values}).one("ConfigMap", "demo-djserve-nginx")["data"][
        "nginx.conf"
    ]
    clients = re.sub(r"upstream \w+ \{[^}]*\}", "", conf)
    return dict(re.findall(r"^\s*(\w+)\s+([^;{]+);", clients, re.MULTILINE))


def _seconds(text: str) -> float:
    found = re.fullmatch(r"(\d+)s", text)
    assert found, text
    return float(found[1])


def test_nginx_config_is_the_file_compose_mounts_with_the_values_filled_in() -> None:
    """One nginx configuration: the staging stack mounts files/nginx.conf, the chart renders it."""
    source = CHART / "files" / "nginx.conf"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
        "nginx"
    ]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in compose["volumes"]}
    config = mounted[f"./{source.relative_to(ROOT)}"]
    assert compose["command"][:3] == ["nginx", "-c", config]
    rendered = render(PROXY).one("ConfigMap", "demo-djserve-nginx")["data"][
        "nginx.conf"
    ]
    changed = [
        line
        for line in difflib.ndiff(
            source.read_text().splitlines(), rendered.splitlines()
        )
        if line[:2] in ("- ", "+ ")
    ]
    # With the default values the chart changes only where nginx listens and whose scheme it believes:
    # compose's second port stands for a TLS-terminating load balancer, which the chart has not.
    assert sorted(changed) == sorted(
        [
            "-     # chart: edge",
            "-     map $server_port $forwarded_proto {",
            "-         8443 https;",
            "+     map $scheme $forwarded_proto {",
            "-     # chart: end",
            "-         # chart: listen",
            "-         listen 8443;",
            "-         # chart: end",
        ]
    )


def test_nginx_holds_ten_thousand_connections_within_its_file_limit() -> None:
    directives = _nginx({})
    connections = int(directives["worker_connections"])
    assert connections >= 10240
    assert int(directives["worker_rlimit_nofile"]) > connections


def test_nginx_cuts_slow_clients_off_before_djserve_does() -> None:
    directives = _nginx({})
    assert (
        _seconds(directives["client_header_timeout"])
        < REGISTRY["header_timeout"].default
    )
    assert _seconds(directives["client_body_timeout"]) <= 10
    assert _seconds(directives["send_timeout"]) <= 10
    # Keep-alive outlives the 60 s idle timeout of ingress-nginx and cloud load balancers in front.
    assert _seconds(directives["keepalive_timeout"]) > 60


def test_nginx_body_limit_is_djserves() -> None:
    assert int(_nginx({})["client_max_body_size"]) == REGISTRY["max_body_bytes"].default
    assert _nginx(_ci("proxy-values.yaml"))["client_max_body_size"] == str(
        _ci("proxy-values.yaml")["djserve"]["max_body_bytes"]
    )
    assert _nginx({"djserve": {"max_body_bytes": 0}})["client_max_body_size"] == "0"


def test_probe_paths_are_djserves_defaults() -> None:
    """The chart's copies of djserve's probe paths are the package's."""
    app = _app()
    assert app["startupProbe"]["httpGet"]["path"] == REGISTRY["health_path"].default
    assert app["readinessProbe"]["httpGet"]["path"] == REGISTRY["ready_path"].default


def test_pod_labels_and_annotations_win_over_common_ones() -> None:
    values = {
        "commonLabels": {"team": "shop", "tier": "web"},
        "podLabels": {"team": "checkout"},
        "commonAnnotations": {"owner": "shop", "note": "common"},
        "podAnnotations": {"note": "pod"},
    }
    for obj in (render(values).one("Deployment"), render(values).one("Job")):
        metadata = obj["spec"]["template"]["metadata"]
        assert {"team": "checkout", "tier": "web"}.items() <= metadata["labels"].items()
        assert {"owner": "shop", "note": "pod"}.items() <= metadata[
            "annotations"
        ].items()
