"""django-prodserver's documented uvicorn examples, verbatim, give the servers they describe."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from uvicorn.main import main as uvicorn_main

from conftest import config, djserve

BACKEND = "django_prodserver.backends.uvicorn.UvicornServer"
EXAMPLES = {
    "production": (
        '{"host": "0.0.0.0", "port": "8000", "workers": "4", "loop": "uvloop", "no-access-log": "True"}',
        {"host": "0.0.0.0", "port": 8000, "workers": 4, "loop": "uvloop", "access_log": False},
    ),
    "behind reverse proxy": (
        '{"host": "127.0.0.1", "port": "8000", "proxy-headers": "True", "forwarded-allow-ips": "*"}',
        {"host": "127.0.0.1", "port": 8000, "proxy_headers": True, "forwarded_allow_ips": "*"},
    ),
    "websocket support": (
        '{"host": "0.0.0.0", "port": "8000", "timeout-keep-alive": "60"}',
        {"host": "0.0.0.0", "port": 8000, "timeout_keep_alive": 60},
    ),
}


@pytest.mark.parametrize("example", EXAMPLES)
def test_documented_example(site: Path, example: str) -> None:
    args, expected = EXAMPLES[example]
    settings = site / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text() + f'\nPRODUCTION_PROCESSES = {{"web": {{"BACKEND": "{BACKEND}", "ARGS": {args}}}}}\n'
    )
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
    values = config(site, **env)
    assert {name: values[name] for name in expected} == expected
    assert djserve("check", cwd=site, env=env).code == 0
    # The line djserve would run is one uvicorn's own CLI accepts (django-prodserver's is not).
    line = djserve("command", cwd=site, env=env).out
    argv = shlex.split(line)
    uvicorn_args = argv[argv.index("uvicorn") + 1 :]
    params = uvicorn_main.make_context("uvicorn", uvicorn_args).params
    assert {name: params[name] for name in expected} == expected


def test_limit_concurrency_none_means_no_limit(site: Path) -> None:
    settings = site / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text()
        + f'\nPRODUCTION_PROCESSES = {{"web": {{"BACKEND": "{BACKEND}", "ARGS": {{"limit-concurrency": "None"}}}}}}\n'
    )
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "UVICORN_LIMIT_CONCURRENCY": ""}
    del env["UVICORN_LIMIT_CONCURRENCY"]
    assert config(site, **env)["limit_concurrency"] is None
    assert djserve("check", cwd=site, env=env).code == 0
