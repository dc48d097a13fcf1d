"""checkov's Kubernetes policies pass on the render of every ci/ values file.

checkov runs from its own virtualenv (.venv-checkov, `make checkov-venv`): it pins packaging<24,
which the shared .venv's pytest cannot share. Every skip is listed, with its reason, in the chart
README's "checkov skips" table.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from helmchart import CHART, CI_VALUES, ROOT, load_values, render, write

CHECKOV = Path(os.environ.get("CHECKOV", ROOT / ".venv-checkov" / "bin" / "checkov"))
SKIPS = ("CKV_K8S_15", "CKV_K8S_43")


@pytest.fixture(scope="module")
def rendered_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rendered")
    for values_file in CI_VALUES:
        write(render(load_values(values_file)), out / values_file.stem)
    return out


@pytest.fixture(scope="module")
def report(rendered_dir: Path) -> dict[str, Any]:
    assert CHECKOV.exists(), f"{CHECKOV} is missing: run `make checkov-venv`"
    result = subprocess.run(
        [
            str(CHECKOV),
            "--framework",
            "kubernetes",
            "-d",
            str(rendered_dir),
            "--output",
            "json",
            "--compact",
            "--skip-check",
            ",".join(SKIPS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.stdout, result.stderr
    parsed: dict[str, Any] = json.loads(result.stdout)
    assert parsed["check_type"] == "kubernetes", parsed
    return parsed


def test_no_policy_fails(report: dict[str, Any]) -> None:
    failed = [
        f"{check['check_id']} {check['check_name']}: {check['resource']} in {check['file_path']}"
        for check in report["results"]["failed_checks"]
    ]
    assert not failed, "\n".join(failed)
    assert report["summary"]["failed"] == 0 and report["summary"]["parsing_errors"] == 0
    assert report["summary"]["passed"] > 0


def test_every_pod_was_checked(report: dict[str, Any]) -> None:
    checked = {c["file_path"] for c in report["results"]["passed_checks"]}
    pods = {
        f"/{values_file.stem}/{path}"
        for values_file in CI_VALUES
        for path, text in render(load_values(values_file)).manifests.items()
        if any(
            doc and doc["kind"] in ("Deployment", "Job")
            for doc in yaml.safe_load_all(text)
        )
    }
    assert pods and pods <= checked, pods - checked


def test_every_skip_is_explained_in_the_readme() -> None:
    readme = (CHART / "README.md").read_text()
    section = readme.split("## checkov skips", 1)[1].split("\n## ", 1)[0]
    listed = {
        line.split("|")[1].strip(" `")
        for line in section.splitlines()
        if line.startswith("| `CKV")
    }
    assert listed == set(SKIPS)
