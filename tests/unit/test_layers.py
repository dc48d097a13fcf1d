"""Each configuration layer, the precedence between them, and what users get for bad input."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from djserve.config.options import REGISTRY as SETTINGS_REGISTRY
from djserve.config.options import key_index

from conftest import config, djserve, sources

SETTINGS = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}


def add_setting(site: Path, text: str) -> None:
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + "\n" + text + "\n")


def toml(site: Path, text: str) -> str:
    path = site / "djserve.toml"
    path.write_text(text)
    return str(path)


def test_defaults_suit_a_container(project: Path) -> None:
    values = config(project, **SETTINGS)
    assert (values["host"], values["port"], values["lifespan"], values["workers"]) == ("0.0.0.0", 8000, "off", 1)
    assert values["app"] == "mysite.asgi:application"
    assert sources(project, **SETTINGS)["app"] == "django:DJANGO_SETTINGS_MODULE"


def test_wsgi_app_comes_from_wsgi_application(project: Path) -> None:
    values = config(project, DJSERVE_INTERFACE="wsgi", **SETTINGS)
    assert values["app"] == "mysite.wsgi:application"
    assert sources(project, DJSERVE_INTERFACE="wsgi", **SETTINGS)["app"] == "django:WSGI_APPLICATION"


def test_asgi_application_setting_is_used(site: Path) -> None:
    (site / "mysite" / "routing.py").write_text("from mysite.asgi import application as app\n")
    add_setting(site, "ASGI_APPLICATION = 'mysite.routing.app'")
    assert config(site, **SETTINGS)["app"] == "mysite.routing:app"
    assert djserve("check", cwd=site, env=SETTINGS).code == 0


def test_settings_package_finds_the_project_asgi_module(site: Path) -> None:
    package = site / "mysite" / "settings"
    package.mkdir()
    (site / "mysite" / "settings.py").rename(package / "base.py")
    (package / "__init__.py").write_text("")
    (package / "production.py").write_text("from .base import *\nDEBUG = False\n")
    env = {"DJANGO_SETTINGS_MODULE": "mysite.settings.production"}
    assert config(site, **env)["app"] == "mysite.asgi:application"
    result = djserve("check", cwd=site, env=env)
    assert result.code == 0, result.err


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        (
            "production",
            {"host": "0.0.0.0", "loop": "uvloop", "http": "httptools", "access_log": False, "proxy_headers": False},
        ),
        ("proxy", {"host": "127.0.0.1", "proxy_headers": True, "forwarded_allow_ips": "127.0.0.1,::1"}),
        ("websocket", {"timeout_keep_alive": 60, "ws_max_size": 1048576, "timeout_graceful_shutdown": 20}),
    ],
)
def test_presets(project: Path, preset: str, expected: dict[str, object]) -> None:
    values = config(project, DJSERVE_PRESET=preset, **SETTINGS)
    assert {k: values[k] for k in expected} == expected
    assert values["server_header"] is False
    assert values["workers"] == len(os.sched_getaffinity(0))  # auto: no CPU quota on the test host
    assert sources(project, DJSERVE_PRESET=preset, **SETTINGS)["loop"] == f"preset:{preset}"


def test_production_graceful_shutdown_fits_kubernetes_grace(project: Path) -> None:
    assert 0 < config(project, DJSERVE_PRESET="production", **SETTINGS)["timeout_graceful_shutdown"] < 30


def test_precedence_of_every_layer(site: Path) -> None:
    """timeout_keep_alive set in every layer; each layer beats the ones below it."""
    add_setting(
        site,
        "PRODUCTION_PROCESSES = {'web': {'BACKEND': 'django_prodserver.backends.uvicorn.UvicornServer',"
        " 'ARGS': {'timeout-keep-alive': '30'}}}",
    )
    path = toml(site, "[uvicorn]\ntimeout-keep-alive = 40\n")
    layers = [
        ((), {"DJSERVE_PROCESS": "worker"}, 60, "preset:websocket"),  # no PRODUCTION_PROCESSES entry
        ((), {}, 30, "django:PRODUCTION_PROCESSES[web]"),
        ((), {"DJSERVE_CONFIG": path}, 40, f"file:{path}"),
        ((), {"DJSERVE_CONFIG": path, "UVICORN_TIMEOUT_KEEP_ALIVE": "50"}, 50, "env:UVICORN_TIMEOUT_KEEP_ALIVE"),
        (("--timeout-keep-alive", "70"), {"DJSERVE_CONFIG": path, "UVICORN_TIMEOUT_KEEP_ALIVE": "50"}, 70, "cli"),
    ]
    for args, layer_env, value, source in layers:
        env = {**SETTINGS, "DJSERVE_PRESET": "websocket", **layer_env}
        assert config(site, *args, **env)["timeout_keep_alive"] == value
        assert sources(site, *args, **env)["timeout_keep_alive"] == source


def test_file_spellings_and_kit_settings(project: Path) -> None:
    path = toml(
        project,
        'preset = "proxy"\nhealth_path = "/healthz"\nlog-format = "json"\n'
        "[uvicorn]\nno-access-log = true\ntimeout_graceful_shutdown = 7\nworkers = \"auto\"\nheader = ['X-A: 1']\n",
    )
    values = config(project, DJSERVE_CONFIG=path, **SETTINGS)
    assert values["preset"] == "proxy"
    assert values["host"] == "127.0.0.1"  # the file's preset chooses layer 2
    assert (values["health_path"], values["log_format"], values["access_log"]) == ("/healthz", "json", False)
    assert (values["timeout_graceful_shutdown"], values["headers"]) == (7, ["X-A: 1"])
    assert values["workers"] == len(os.sched_getaffinity(0))


def test_environment_names_aliases_and_secret_files(project: Path, tmp_path: Path) -> None:
    secret = tmp_path / "password"
    secret.write_text("hunter2\n")
    env = {
        **SETTINGS,
        "PORT": "9000",
        "WEB_CONCURRENCY": "3",
        "UVICORN_WORKERS": "2",  # uvicorn's own name wins over the convention
        "FORWARDED_ALLOW_IPS": "10.0.0.1",
        "DJSERVE_MIGRATE": "true",
        "UVICORN_SSL_KEYFILE_PASSWORD_FILE": str(secret),
        "DJSERVE_HEALTH_PATH_FILE": str(secret.with_name("health")),
    }
    secret.with_name("health").write_text("/alive\n")
    values = config(project, **env)
    assert (values["port"], values["workers"], values["forwarded_allow_ips"]) == (9000, 2, "10.0.0.1")
    assert values["migrate"] is True
    # Anything read from a file is shown redacted, whatever the setting.
    assert (values["ssl_keyfile_password"], values["health_path"]) == ("<redacted>", "<redacted>")
    assert sources(project, **env)["ssl_keyfile_password"] == "env:UVICORN_SSL_KEYFILE_PASSWORD_FILE"
    assert "hunter2" not in djserve("command", cwd=project, env=env).out


@pytest.mark.parametrize("layer", ["env", "file", "cli", "django"])
def test_workers_auto_in_every_layer(site: Path, layer: str) -> None:
    args: tuple[str, ...] = ()
    env = dict(SETTINGS)
    if layer == "env":
        env["WEB_CONCURRENCY"] = "auto"
    elif layer == "file":
        env["DJSERVE_CONFIG"] = toml(site, '[uvicorn]\nworkers = "auto"\n')
    elif layer == "cli":
        args = ("--workers", "auto")
    else:
        add_setting(site, "PRODUCTION_PROCESSES = {'web': {'BACKEND': 'x.UvicornServer', 'ARGS': {'workers': 'auto'}}}")
    assert config(site, *args, **env)["workers"] == len(os.sched_getaffinity(0))


def test_process_selects_the_production_processes_entry(site: Path) -> None:
    add_setting(
        site,
        "PRODUCTION_PROCESSES = {'web': {'BACKEND': 'django_prodserver.backends.uvicorn.UvicornServer', 'ARGS': {}},"
        " 'legacy': {'BACKEND': 'django_prodserver.backends.uvicorn.UvicornWSGIServer', 'ARGS': {'port': '8111'}}}",
    )
    values = config(site, DJSERVE_PROCESS="legacy", **SETTINGS)
    assert (values["interface"], values["port"], values["app"]) == ("wsgi", 8111, "mysite.wsgi:application")
    assert config(site, **SETTINGS)["interface"] == "asgi"


@pytest.mark.parametrize("var", ["UVICORN_VERSION", "UVICORN_HELP"])
def test_version_pins_are_not_settings(project: Path, var: str) -> None:
    result = djserve("check", cwd=project, env={**SETTINGS, var: "0.54.0"})
    assert (result.code, result.out.strip(), result.err) == (0, "configuration OK", "")


def test_kubernetes_service_links_are_ignored(project: Path) -> None:
    links = {"DJSERVE_SERVICE_HOST": "10.0.0.1", "DJSERVE_PORT": "tcp://10.0.0.1:80", "DJSERVE_PORT_80_TCP": "x"}
    assert djserve("check", cwd=project, env={**SETTINGS, **links}).code == 0


def problems(site: Path, *args: str, **env: str) -> list[str]:
    result = djserve("check", *args, cwd=site, env={**SETTINGS, **env})
    assert result.code == 78, (result.out, result.err)
    assert "Traceback" not in result.err
    return result.lines


BAD_INPUT = [
    ({"UVICORN_PORT": "abc"}, (), "UVICORN_PORT (environment): 'abc' is not a valid integer"),
    ({"PORT": "0"}, (), "PORT (environment): 0 is not in the range 1<=x<=65535"),
    ({}, ("--port", "70000"), "--port (command line): 70000 is not in the range 1<=x<=65535"),
    (
        {"DJSERVE_PRESETT": "proxy"},
        (),
        "DJSERVE_PRESETT (environment): unknown setting; did you mean 'DJSERVE_PRESET'?",
    ),
    (
        {"DJSERVE_PRESET": "prod"},
        (),
        "DJSERVE_PRESET (environment): 'prod' is not one of 'default', 'production', 'proxy', 'websocket'",
    ),
    ({"UVICORN_RELOAD": "true", "UVICORN_WORKERS": "2"}, (), "UVICORN_RELOAD (environment): reload cannot run 2"),
    (
        {"DJSERVE_PRESET": "websocket", "DJSERVE_INTERFACE": "wsgi"},
        (),
        "DJSERVE_INTERFACE (environment): the websocket",
    ),
    ({"FORWARDED_ALLOW_IPS": "*"}, (), "FORWARDED_ALLOW_IPS (environment): trusting '*' while listening on 0.0.0.0"),
    ({"UVICORN_PORT": "tcp://10.0.0.1:80"}, (), "enableServiceLinks: false"),
    (
        {"DJSERVE_APP": "mysite.asgi:app"},
        (),
        "DJSERVE_APP (environment): ASGI app not found: mysite.asgi has no attribute 'app' (does asgi.py define app?)",
    ),
    (
        {"DJANGO_SETTINGS_MODULE": "nosuch.settings"},
        (),
        "DJANGO_SETTINGS_MODULE (environment): no module named 'nosuch'",
    ),
    ({"DJANGO_SETTINGS_MODULE": ""}, (), "app (default): no app to serve"),
    ({}, ("--prot", "80"), "command line: No such option '--prot'. (Did you mean one of: '--port'"),
    (
        {"UVICORN_LOOP": "tokio"},
        (),
        "UVICORN_LOOP (environment): 'tokio' is neither one of 'none', 'auto', 'asyncio', 'uvloop'",
    ),
    ({"UVICORN_HTTP": "h3"}, (), "UVICORN_HTTP (environment): 'h3' is neither one of 'auto', 'h11', 'httptools'"),
    ({"UVICORN_WS": "nope"}, (), "UVICORN_WS (environment): 'nope' is neither one of 'auto', 'none', 'websockets'"),
    ({"UVICORN_HTTP": "zttp"}, (), "UVICORN_HTTP (environment): 'zttp' needs the 'zttp' package, which is not"),
    (
        {"UVICORN_WS": "mysite.nosuch:Protocol"},
        (),
        "UVICORN_WS (environment): cannot import 'mysite.nosuch:Protocol': Could not import module",
    ),
    (
        {"UVICORN_WORKERS": "100000"},
        (),
        f"UVICORN_WORKERS (environment): 100000 is more than 64 workers per CPU of the container's limit "
        f"({len(os.sched_getaffinity(0))})",
    ),
    ({"UVICORN_LIMIT_CONCURRENCY": "0"}, (), "UVICORN_LIMIT_CONCURRENCY (environment): 0 is not in the range x>=1"),
    ({}, ("--timeout-keep-alive", "-1"), "--timeout-keep-alive (command line): -1 is not in the range x>=0"),
    (
        {"UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN": "-5"},
        (),
        "UVICORN_TIMEOUT_GRACEFUL_SHUTDOWN (environment): -5 is not in the range x>=0",
    ),
    (
        {"UVICORN_TIMEOUT_WORKER_HEALTHCHECK": "0"},
        (),
        "UVICORN_TIMEOUT_WORKER_HEALTHCHECK (environment): 0 is not in the range x>=1",
    ),
    ({"UVICORN_WS_PING_INTERVAL": "-1"}, (), "UVICORN_WS_PING_INTERVAL (environment): -1.0 is not in the range x>=0"),
    (
        {"UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE": "0"},
        (),
        "UVICORN_H11_MAX_INCOMPLETE_EVENT_SIZE (environment): 0 is not in the range x>=1",
    ),
    (
        {"UVICORN_SSL_CERTFILE": "/nonexistent.pem"},
        (),
        "UVICORN_SSL_CERTFILE (environment): File '/nonexistent.pem' does not exist",
    ),
    (
        {"UVICORN_HOST": "example.com\nX-Injected: 1"},
        (),
        "UVICORN_HOST (environment): 'example.com\\nX-Injected: 1' is neither an IP address nor a host name",
    ),
]


@pytest.mark.parametrize(("env", "args", "line"), BAD_INPUT)
def test_bad_input_is_one_clear_line(project: Path, env: dict[str, str], args: tuple[str, ...], line: str) -> None:
    lines = problems(project, *args, **env)
    assert len(lines) == 1, lines
    assert lines[0].startswith(line) or line in lines[0], lines


def test_hosts_that_bind(project: Path) -> None:
    for host in ("::1", "127.0.0.1", "localhost", "web-1.internal.example.", "fe80::1%lo"):
        assert djserve("check", cwd=project, env={**SETTINGS, "UVICORN_HOST": host}).code == 0, host


def test_installed_implementations_pass(project: Path) -> None:
    env = {**SETTINGS, "UVICORN_LOOP": "uvloop", "UVICORN_HTTP": "h11", "UVICORN_WS": "wsproto"}
    assert djserve("check", cwd=project, env=env).code == 0
    custom = {**SETTINGS, "UVICORN_HTTP": "uvicorn.protocols.http.h11_impl:H11Protocol"}
    assert djserve("check", cwd=project, env=custom).code == 0


def tls_pair(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate and its key, made by openssl."""
    directory.mkdir(exist_ok=True)
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-days",
            "1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


def test_tls_key_and_certificate_come_together_and_load(project: Path, tmp_path: Path) -> None:
    key, cert = tls_pair(tmp_path / "pair")
    both = {"UVICORN_SSL_KEYFILE": str(key), "UVICORN_SSL_CERTFILE": str(cert)}
    assert djserve("check", cwd=project, env={**SETTINGS, **both}).code == 0
    (line,) = problems(project, UVICORN_SSL_KEYFILE=str(key))
    assert line == "UVICORN_SSL_KEYFILE (environment): TLS needs both a key and a certificate: set ssl_certfile too"
    (line,) = problems(project, UVICORN_SSL_CERTFILE=str(cert))
    assert line.startswith("UVICORN_SSL_CERTFILE (environment): TLS needs both")
    other_key, _ = tls_pair(tmp_path / "other")
    (line,) = problems(project, UVICORN_SSL_KEYFILE=str(other_key), UVICORN_SSL_CERTFILE=str(cert))
    assert "the certificate and key do not load" in line


def test_binary_settings_file_is_one_line_naming_it(project: Path) -> None:
    path = project / "binary.toml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    (line,) = problems(project, DJSERVE_CONFIG=str(path))
    assert line == f"{path}: not UTF-8 text (byte 0): TOML files are UTF-8"


def test_binary_secret_file_is_one_line_naming_it(project: Path) -> None:
    path = project / "port.bin"
    path.write_bytes(b"\xff\xfe80")
    (line,) = problems(project, UVICORN_PORT_FILE=str(path))
    # The bytes pass through undecoded (djserve.envfiles) and are never quoted back.
    assert line == "UVICORN_PORT_FILE (environment): not a valid integer (the file's value is not shown)"


def test_a_toml_value_of_the_wrong_kind_is_one_line(project: Path) -> None:
    path = toml(project, "[uvicorn]\nport = 1979-05-27\n")
    (line,) = problems(project, DJSERVE_CONFIG=path)
    assert line == f"uvicorn.port ({path}): datetime.date(1979, 5, 27) is not a valid integer"


@pytest.mark.parametrize(
    ("items", "message"), [("[1, 2]", "1 is not a path"), ('[["a"]]', "expected a single value, got list")]
)
def test_each_item_of_a_list_setting_is_checked_as_one_value(project: Path, items: str, message: str) -> None:
    path = toml(project, f"[uvicorn]\nreload_dirs = {items}\n")
    (line,) = problems(project, DJSERVE_CONFIG=path)
    assert line == f"uvicorn.reload_dirs ({path}): {message}"


def test_two_spellings_of_one_setting_in_one_file_name_both(project: Path) -> None:
    path = toml(project, "[uvicorn]\naccess-log = true\nno-access-log = true\n")
    (line,) = problems(project, DJSERVE_CONFIG=path)
    assert line == f"uvicorn.no-access-log ({path}): conflicts with uvicorn.access-log in the same file; keep one"


def test_two_spellings_of_one_setting_in_production_processes_name_both(site: Path) -> None:
    add_setting(
        site,
        "PRODUCTION_PROCESSES = {'web': {'BACKEND': 'django_prodserver.backends.uvicorn.UvicornServer',"
        " 'ARGS': {'timeout-keep-alive': '3', 'timeout_keep_alive': '4'}}}",
    )
    (line,) = problems(site)
    assert line == (
        "PRODUCTION_PROCESSES['web']['ARGS']['timeout_keep_alive'] (Django settings): conflicts with "
        "PRODUCTION_PROCESSES['web']['ARGS']['timeout-keep-alive'] in the same ARGS; keep one"
    )


def test_proxy_trust_of_anyone_is_fine_on_loopback_or_when_acknowledged(project: Path) -> None:
    assert (
        djserve("check", cwd=project, env={**SETTINGS, "FORWARDED_ALLOW_IPS": "*", "UVICORN_HOST": "127.0.0.1"}).code
        == 0
    )
    assert (
        djserve("check", cwd=project, env={**SETTINGS, "FORWARDED_ALLOW_IPS": "*", "DJSERVE_TRUST_ANY_PROXY": "1"}).code
        == 0
    )
    assert (
        djserve(
            "check", cwd=project, env={**SETTINGS, "FORWARDED_ALLOW_IPS": "*", "UVICORN_NO_PROXY_HEADERS": "x"}
        ).code
        == 78
    )


def test_every_problem_at_once_before_anything_runs(site: Path) -> None:
    marker = site / "ran"
    script = site / "prestart.sh"
    script.write_text(f"#!/bin/sh\ntouch {marker}\n")
    script.chmod(0o755)
    path = toml(site, "[uvicorn]\ntimeout-keep-alvie = 3\nworkers = 'many'\nhealth_path = '/x'\n")
    result = djserve(
        "serve",
        "--port",
        "0",
        cwd=site,
        env={**SETTINGS, "DJSERVE_CONFIG": path, "UVICORN_PORT": "abc", "DJSERVE_PRESTART": str(script)},
    )
    assert result.code == 78
    assert result.lines == [
        f"uvicorn.timeout-keep-alvie ({path}): unknown setting; did you mean 'timeout-keep-alive'?",
        f"uvicorn.health_path ({path}): 'health_path' belongs at the top level, not under [uvicorn]",
        f"uvicorn.workers ({path}): 'many' is not a valid integer",
        "UVICORN_PORT (environment): 'abc' is not a valid integer",
        "--port (command line): 0 is not in the range 1<=x<=65535",
    ]
    assert not marker.exists()


def test_toml_syntax_error_names_file_and_line(project: Path) -> None:
    path = toml(project, 'preset = "proxy"\n[uvicorn\nworkers = 2\n')
    (line,) = problems(project, DJSERVE_CONFIG=path)
    assert line.startswith(f"{path}: invalid TOML: ") and "line 2" in line


def test_both_value_and_file_is_an_error(project: Path, tmp_path: Path) -> None:
    (tmp_path / "p").write_text("9000")
    (line,) = problems(project, UVICORN_PORT="9000", UVICORN_PORT_FILE=str(tmp_path / "p"))
    assert line == (
        "UVICORN_PORT_FILE (environment): UVICORN_PORT is set too; set either UVICORN_PORT or UVICORN_PORT_FILE"
    )


def test_broken_settings_module_names_the_file_and_line(site: Path) -> None:
    add_setting(site, "UNDEFINED_NAME + 1")
    (line,) = problems(site)
    assert line.startswith("DJANGO_SETTINGS_MODULE (environment): mysite.settings failed to import: NameError")
    assert "settings.py, line" in line


def test_missing_asgi_module(site: Path) -> None:
    (site / "mysite" / "asgi.py").unlink()
    (line,) = problems(site)
    assert line == "DJANGO_SETTINGS_MODULE (environment): ASGI app not found: no module named 'mysite.asgi'"


def test_unsupported_backend(site: Path) -> None:
    add_setting(
        site, "PRODUCTION_PROCESSES = {'web': {'BACKEND': 'django_prodserver.backends.gunicorn.GunicornServer'}}"
    )
    (line,) = problems(site)
    assert line.startswith("PRODUCTION_PROCESSES['web']['BACKEND'] (Django settings): ")


# Property: nothing a user can put in the settings file or the environment gives a traceback.
ENV_NAMES = sorted(
    {name for setting in SETTINGS_REGISTRY.values() for var in setting.env for name in (var, f"{var}_FILE")}
    | {"DJSERVE_CONFIG", "DJANGO_SETTINGS_MODULE"}
)
# Environment values cannot hold NUL or unpaired surrogates.
ENV_TEXT = st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=40)
TOML_VALUES = st.sampled_from(
    [
        "1",
        "-1",
        "0",
        "99999999999999999999",
        "1.5",
        "inf",
        "nan",
        "true",
        '"x"',
        '""',
        '"auto"',
        "1979-05-27",
        "07:32:00",
        "[1, 2]",
        '["a"]',
        "{a = 1}",
        '"a\\nb"',
    ]
)


def _table(keys: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.tuples(st.sampled_from(keys), TOML_VALUES), max_size=6).map(
        lambda pairs: "".join(f"{key} = {value}\n" for key, value in pairs)
    )


SETTINGS_FILES = st.one_of(
    st.binary(max_size=300),
    ENV_TEXT.map(str.encode),
    st.tuples(_table(sorted(key_index("kit"))), _table(sorted(key_index("uvicorn")))).map(
        lambda tables: f"{tables[0]}[uvicorn]\n{tables[1]}".encode()
    ),
)


# Each example starts djserve: no time limit per example, and no shrinking (minutes of processes).
ONE_PROCESS_PER_EXAMPLE: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": list(HealthCheck),
    "phases": [Phase.explicit, Phase.reuse, Phase.generate],
}


def no_traceback(project: Path, env: dict[str, str]) -> None:
    result = djserve("check", cwd=project, env=env, timeout=60)
    assert result.code in (0, 78), (result.code, result.err)
    assert "Traceback" not in result.err, result.err


@hypothesis_settings(max_examples=30, **ONE_PROCESS_PER_EXAMPLE)
@given(content=SETTINGS_FILES)
def test_any_settings_file_gives_no_traceback(
    project: Path, tmp_path_factory: pytest.TempPathFactory, content: bytes
) -> None:
    path = tmp_path_factory.mktemp("file") / "djserve.toml"
    path.write_bytes(content)
    no_traceback(project, {**SETTINGS, "DJSERVE_CONFIG": str(path)})


@hypothesis_settings(max_examples=30, **ONE_PROCESS_PER_EXAMPLE)
@given(env=st.dictionaries(st.sampled_from(ENV_NAMES), ENV_TEXT, max_size=len(ENV_NAMES)))
def test_any_environment_gives_no_traceback(project: Path, env: dict[str, str]) -> None:
    no_traceback(project, {**SETTINGS, **env})
