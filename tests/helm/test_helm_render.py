"""Every ci/ values file renders with Helm's engine and passes `helm lint --strict`."""

from __future__ import annotations

from pathlib import Path

import helm_python
import pytest
from helmchart import CHART, CI_VALUES, load_values, render

WARNING = 2


def test_every_preset_has_a_ci_file() -> None:
    presets = {load_values(p).get("preset", "production") for p in CI_VALUES}
    assert presets == {"default", "production", "proxy", "websocket"}


@pytest.mark.parametrize("values_file", CI_VALUES, ids=lambda p: p.name)
def test_renders_and_lints_strict(values_file: Path) -> None:
    values = load_values(values_file)
    rendered = render(values)
    assert rendered.objects, "nothing rendered"
    for obj in rendered.objects:
        assert obj["apiVersion"] and obj["kind"] and obj["metadata"]["name"]
    report = helm_python.lint(CHART, values, strict=True, namespace="web")
    problems = [m for m in report["messages"] if m["severity"] >= WARNING]
    assert not problems and not report["errors"], report
