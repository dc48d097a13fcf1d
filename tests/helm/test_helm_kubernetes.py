"""Every rendered object is valid Kubernetes, strictly, at the oldest and newest supported version.

kubernetes-validate has no schemas for CRDs, so these kinds are skipped here and their shape is
asserted in test_helm_behaviour.py instead: the Gateway API HTTPRoute against the Service it routes
to, the Prometheus Operator ServiceMonitor against the Service and the metrics path it scrapes.
"""

from __future__ import annotations

from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
from helmchart import CI_VALUES, load_values, lowest_kubernetes, render

CRD_KINDS = {
    ("gateway.networking.k8s.io/v1", "HTTPRoute"),
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
}
VERSIONS = [lowest_kubernetes(), kubernetes_validate.utils.latest_version()]


def test_versions_span_a_range() -> None:
    assert VERSIONS[0] != VERSIONS[1], VERSIONS


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_objects_validate_strictly(values_file: Path, version: str) -> None:
    for obj in render(load_values(values_file)).objects:
        if (obj["apiVersion"], obj["kind"]) in CRD_KINDS:
            continue
        kubernetes_validate.validate(obj, version, strict=True)


def test_only_crds_are_skipped() -> None:
    """Every kind the chart renders outside CRD_KINDS is one kubernetes-validate has a schema for."""
    kinds = {
        (obj["apiVersion"], obj["kind"])
        for values_file in CI_VALUES
        for obj in render(load_values(values_file)).objects
    }
    assert CRD_KINDS <= kinds, CRD_KINDS - kinds
    for api_version, kind in kinds - CRD_KINDS:
        group = api_version.rpartition("/")[0]
        assert "." not in group or group.endswith(".k8s.io"), (api_version, kind)


def test_strict_validation_rejects_an_unknown_field() -> None:
    deployment = render().one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, VERSIONS[0], strict=True)
