"""values.schema.json: closed everywhere, in step with uvicorn and Kubernetes, and enforced by Helm."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from importlib import resources
from typing import Any

import click
import helm_python
import pytest
import yaml
from helmchart import CHART, ROOT, lowest_kubernetes, render
from uvicorn.main import main as uvicorn_command

SCHEMA: dict[str, Any] = json.loads((CHART / "values.schema.json").read_text())

# uvicorn options the chart does not offer, each for a reason the chart README repeats.
NOT_OFFERED = {
    "app": "djserve.app",
    "interface": "the top-level interface value",
    "reload": "development only",
    "reload_dirs": "development only",
    "reload_includes": "development only",
    "reload_excludes": "development only",
    "reload_delay": "development only",
    "uds": "the Service and probes need a TCP port",
    "fd": "the Service and probes need a TCP port",
    "ssl_keyfile_password": "a secret: secretFiles with env UVICORN_SSL_KEYFILE_PASSWORD",
    "version": "an action, not a setting",
}


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"replica": 3}, "additional properties 'replica' not allowed"),
        (
            {"uvicorn": {"timeout-graceful-shutdwn": 5}},
            "'timeout-graceful-shutdwn' not allowed",
        ),
        (
            {"uvicorn": {"timeout_graceful_shutdown": 5}},
            "'timeout_graceful_shutdown' not allowed",
        ),
        ({"djserve": {"healthpath": "/h"}}, "'healthpath' not allowed"),
        ({"probes": {"startup": {"periodSecond": 1}}}, "'periodSecond' not allowed"),
        ({"affinity": {"nodeAfinity": {}}}, "'nodeAfinity' not allowed"),
        ({"resources": {"limit": {"cpu": 1}}}, "'limit' not allowed"),
        (
            {
                "secretFiles": [
                    {
                        "env": "DJANGO_SECRET_KEY",
                        "secretName": "s",
                        "key": "k",
                        "mode": 1,
                    }
                ]
            },
            "'mode'",
        ),
        ({"replicas": "two"}, "/replicas': got string, want integer"),
        ({"uvicorn": {"workers": "many"}}, "/uvicorn/workers"),
        (
            {"uvicorn": {"no-access-log": "yes"}},
            "/uvicorn/no-access-log': got string, want boolean",
        ),
        ({"uvicorn": {"log-level": "verbose"}}, "/uvicorn/log-level"),
        ({"preset": "fast"}, "/preset"),
        ({"interface": "rsgi"}, "/interface"),
        ({"nginx": {"port": 80}}, "/nginx/port': minimum"),
        ({"image": {"digest": "latest"}}, "/image/digest"),
        (
            {"env": {"DJSERVE_MIGRATE": "true"}},
            "invalid propertyName 'DJSERVE_MIGRATE'",
        ),
        ({"extraEnv": [{"name": "DJSERVE_PRESET", "value": "default"}]}, "/extraEnv/0"),
        ({"terminationGracePeriodSeconds": "30s"}, "/terminationGracePeriodSeconds"),
        ({"interface": "asgi3"}, "/interface"),
        ({"djserve": {"wsgi_threads": 8}}, "'wsgi_threads' not allowed"),
        ({"djserve": {"threads": 0}}, "/djserve/threads': minimum"),
        ({"djserve": {"header_timeout": 0}}, "/djserve/header_timeout"),
        ({"djserve": {"max_body_bytes": "100m"}}, "/djserve/max_body_bytes"),
        ({"djserve": {"metrics_path": "metrics"}}, "/djserve/metrics_path"),
        ({"djserve": {"serve_static": "yes"}}, "/djserve/serve_static"),
        ({"ingress": {"proxyTimeoutSeconds": 60}}, "'proxyTimeoutSeconds' not allowed"),
        ({"nginx": {"clientMaxBodySize": "10m"}}, "'clientMaxBodySize' not allowed"),
        (
            {"commonLabels": {"app.kubernetes.io/name": "x"}},
            "invalid propertyName 'app.kubernetes.io/name'",
        ),
        ({"commonAnnotations": {"a": 1}}, "/commonAnnotations/a"),
        ({"extraVolumes": [{"name": "tmp", "emptyDir": {}}]}, "/extraVolumes/0"),
        ({"extraVolumes": [{"name": "v", "emptyDirr": {}}]}, "'emptyDirr'"),
        ({"extraVolumeMounts": [{"name": "v"}]}, "/extraVolumeMounts/0"),
        ({"extraContainers": [{"name": "app", "image": "x"}]}, "/extraContainers/0"),
        ({"initContainers": [{"name": "p", "imag": "x"}]}, "'imag'"),
        ({"securityContext": {"runAsUser": 0, "runAsGroup": 0}}, "/securityContext"),
        ({"securityContext": {"readOnlyRootFs": True}}, "'readOnlyRootFs'"),
        ({"podSecurityContext": {"fsGroup": "0"}}, "/podSecurityContext/fsGroup"),
        (
            {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}},
            "/metrics/serviceMonitor/interval",
        ),
        ({"metrics": {"serviceMonitor": {"port": "http"}}}, "'port' not allowed"),
        ({"shutdown": {"marginSeconds": 0}}, "/shutdown/marginSeconds': minimum"),
    ],
)
def test_helm_rejects(values: dict[str, Any], complaint: str) -> None:
    with pytest.raises(helm_python.HelmValuesError) as error:
        render(values)
    assert complaint in str(error.value)


def _objects(node: Any, path: str = "#") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema that describes an object; a `not` only states what is refused."""
    if isinstance(node, dict):
        declared = node.get("type")
        types = declared if isinstance(declared, list) else [declared]
        if "properties" in node or "object" in types:
            yield path, node
        for key, value in node.items():
            if key != "not":
                yield from _objects(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _objects(value, f"{path}/{index}")


# Kubernetes' own free-form types, reached through its object schemas, with why they are open.
FREE_FORM = {
    "#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.FieldsV1": (
        "managedFields entries, reached through an ephemeral volume's claim template"
    ),
}


def test_every_object_is_closed() -> None:
    """Fixed keys come with additionalProperties false; free-form maps type their values."""
    found = [(path, node) for path, node in _objects(SCHEMA) if path not in FREE_FORM]
    assert len(found) > 40
    assert set(FREE_FORM) <= {path for path, _ in _objects(SCHEMA)}
    for path, node in found:
        extra = node.get("additionalProperties")
        if "properties" in node:
            assert extra is False, path
        else:
            assert isinstance(extra, dict) and extra, (
                f"{path}: an open map must type its values"
            )


def test_schema_is_self_contained_2020_12() -> None:
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    refs = re.findall(r'"\$ref": "([^"]*)"', json.dumps(SCHEMA))
    assert refs
    for ref in refs:
        assert (
            ref.startswith("#/$defs/")
            and ref.removeprefix("#/$defs/") in SCHEMA["$defs"]
        ), ref


def test_uvicorn_table_offers_every_uvicorn_option() -> None:
    expected: dict[str, str] = {}
    for param in uvicorn_command.params:
        if param.name in NOT_OFFERED or not isinstance(param, click.Option):
            continue
        for opt in param.opts + param.secondary_opts:
            expected[opt.removeprefix("--")] = str(param.name)
    assert set(SCHEMA["properties"]["uvicorn"]["properties"]) == set(expected)


def test_host_uvicorn_is_the_images_uvicorn() -> None:
    """The uvicorn option list above comes from the host's uvicorn: it must be the one in the images."""
    import uvicorn

    lock = (ROOT / "requirements" / "image.lock").read_text()
    assert re.search(
        rf"^uvicorn(\[[a-z,]+\])?=={re.escape(uvicorn.__version__)}\b",
        lock,
        re.MULTILINE,
    )


def _strip(node: Any) -> Any:
    if isinstance(node, dict):
        return {
            k: _strip(v)
            for k, v in node.items()
            if k != "description" and not k.startswith("x-kubernetes-")
        }
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def test_kubernetes_types_are_those_of_the_oldest_supported_release() -> None:
    """affinity, tolerations, resources, ... are Kubernetes' own strict schemas, not hand-made copies."""
    folder = f"v{lowest_kubernetes()}.0-local-strict"
    source = (
        resources.files("kubernetes_validate")
        / "kubernetes-json-schema"
        / folder
        / "_definitions.json"
    )
    kubernetes = json.loads(source.read_text())["$defs"]
    for name, definition in SCHEMA["$defs"].items():
        assert definition == _strip(kubernetes[name]), name


def _leaf_paths(
    node: dict[str, Any], schema: dict[str, Any], prefix: str = ""
) -> Iterator[str]:
    """Paths of the documented values: chart-defined keys, with Kubernetes objects taken whole."""
    for key, value in node.items():
        below = schema["properties"][key]
        if isinstance(value, dict) and value and "properties" in below:
            yield from _leaf_paths(value, below, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}"


def test_every_value_is_documented() -> None:
    """Each leaf of values.yaml has a comment just above it and a row in the README values table."""
    text = (CHART / "values.yaml").read_text()
    leaves = set(_leaf_paths(yaml.safe_load(text), SCHEMA))
    stack: list[tuple[int, str]] = []
    previous = ""
    for line in text.splitlines():
        found = re.match(r"^( *)([\w.-]+):", line)
        if found:
            indent = len(found[1])
            stack = [(i, k) for i, k in stack if i < indent] + [(indent, found[2])]
            path = ".".join(k for _, k in stack)
            if path in leaves:
                assert previous.lstrip().startswith("#"), f"{path} has no comment"
        if line.strip():
            previous = line
    readme = (CHART / "README.md").read_text().split("\n## Values\n", 1)[1]
    table = set(re.findall(r"^\| `([\w.-]+)` \|", readme, re.MULTILINE))
    assert table == leaves
