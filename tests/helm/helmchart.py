"""The djserve chart rendered by Helm's own Go engine (helm-python-sdk), offline, and read back.

Run as a script to write every ci/ values file's render to a directory:
``python tests/helm/helmchart.py build/helm``.
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "djserve"
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
RELEASE = "demo"
NAMESPACE = "web"


@functools.cache
def chart() -> helm_python.Chart:
    return helm_python.Chart.load(CHART)


def load_values(path: Path) -> dict[str, Any]:
    values: dict[str, Any] = yaml.safe_load(path.read_text()) or {}
    return values


@dataclass(frozen=True)
class Rendered:
    """What `helm template` would print: manifests by template path, parsed into objects."""

    manifests: dict[str, str]

    @functools.cached_property
    def objects(self) -> list[dict[str, Any]]:
        return [
            doc
            for text in self.manifests.values()
            for doc in yaml.safe_load_all(text)
            if doc
        ]

    def all(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o["kind"] == kind]

    def one(self, kind: str, name: str | None = None) -> dict[str, Any]:
        found = [
            o for o in self.all(kind) if name is None or o["metadata"]["name"] == name
        ]
        assert len(found) == 1, (
            f"expected one {kind} {name or ''}, rendered {len(found)}"
        )
        return found[0]

    def pod_specs(self) -> list[dict[str, Any]]:
        return [
            o["spec"]["template"]["spec"]
            for o in self.objects
            if o["kind"] in ("Deployment", "Job")
        ]


def render(values: dict[str, Any] | None = None) -> Rendered:
    """Render like `helm install`; NOTES.txt and templates that render nothing are left out."""
    manifests = chart().render(values=values or {}, name=RELEASE, namespace=NAMESPACE)
    kept = {
        path: text
        for path, text in manifests.items()
        if not path.endswith("NOTES.txt") and any(yaml.safe_load_all(text))
    }
    return Rendered(kept)


def write(rendered: Rendered, directory: Path) -> None:
    """One file per template, as `helm template --output-dir` lays them out."""
    for path, text in rendered.manifests.items():
        target = directory / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)


def lowest_kubernetes() -> str:
    """The floor of Chart.yaml's kubeVersion (">=1.30.0-0" -> "1.30")."""
    constraint = str(chart().metadata["kubeVersion"])
    found = re.fullmatch(r">=\s*v?(\d+)\.(\d+)(?:\.\d+)?(?:-0)?", constraint)
    assert found, f"kubeVersion {constraint!r} is not a plain lower bound"
    return f"{found[1]}.{found[2]}"


def main(out: str) -> None:
    for path in CI_VALUES:
        target = Path(out) / path.name.removesuffix("-values.yaml")
        write(render(load_values(path)), target)
        print(target)


if __name__ == "__main__":
    main(*sys.argv[1:])
