"""The image's HEALTHCHECK (docker/healthcheck.py) against a real server, read as djserve reads its settings."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from djserve import defaults
from djserve.config.options import REGISTRY

from conftest import environment, free_port

HEALTHCHECK = Path(__file__).resolve().parents[2] / "docker" / "healthcheck.py"


def healthcheck(**env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK)], env=environment(**env), capture_output=True, text=True, timeout=10
    )


def load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("healthcheck", HEALTHCHECK)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_healthcheck_reads_the_variables_djserve_reads_in_its_order() -> None:
    """The script cannot afford to import the registry at every check, so it names them; here they must agree."""
    script = load_script()
    assert REGISTRY["port"].env == script.PORT_VARIABLES
    assert REGISTRY["health_path"].env == script.HEALTH_PATH_VARIABLES


def test_healthcheck_imports_nothing_heavy() -> None:
    probe = (
        f"import runpy, sys; runpy.run_path({str(HEALTHCHECK)!r}); "
        "print(*sorted(m for m in sys.modules if m.split('.')[0] in {'click', 'uvicorn', 'django', 'djserve'}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], env=environment(), capture_output=True, text=True, timeout=10)
    assert done.stdout.split() == ["djserve", "djserve.defaults"], done.stderr


def test_healthcheck_follows_the_port_and_health_path_the_server_was_given(serve: Any) -> None:
    server = serve(ready="/-/alive", DJSERVE_HEALTH_PATH="/-/alive")
    assert healthcheck(UVICORN_PORT=str(server.port), DJSERVE_HEALTH_PATH="/-/alive").returncode == 0
    # PORT is the conventional name platforms set; UVICORN_PORT wins over it, as in djserve.
    assert healthcheck(PORT=str(server.port), DJSERVE_HEALTH_PATH="/-/alive").returncode == 0
    assert healthcheck(UVICORN_PORT=str(server.port), PORT="1", DJSERVE_HEALTH_PATH="/-/alive").returncode == 0
    # The default health path is Django's here, and Django has no such URL.
    wrong_path = healthcheck(UVICORN_PORT=str(server.port))
    assert (wrong_path.returncode, wrong_path.stderr.strip()) == (
        1,
        f"127.0.0.1:{server.port}{defaults.HEALTH_PATH}: HTTP 404",
    )


def test_healthcheck_fails_when_nothing_listens() -> None:
    port = free_port()
    done = healthcheck(PORT=str(port))
    assert done.returncode == 1
    assert done.stderr.startswith(f"127.0.0.1:{port}{defaults.HEALTH_PATH}: ")
