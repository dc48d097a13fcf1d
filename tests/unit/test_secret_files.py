"""Any ``<VAR>_FILE``: docker-library's ``file_env`` for every variable, before Django is imported."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import config, djserve, get, sources

SETTINGS = {"DJANGO_SETTINGS_MODULE": "mysite.settings"}
KEY = b"key with  spaces\tand a tab "  # inner and trailing blanks: kept exactly
BLOB = b"\xff\xfe not UTF-8 \r"  # bytes that are not UTF-8 reach the process environment unchanged


def reads_key_from_environment(site: Path) -> None:
    """Settings as nearly every project writes them, and a view that shows a variable's exact bytes."""
    settings = site / "mysite" / "settings.py"
    text = settings.read_text().replace("SECRET_KEY = ", 'SECRET_KEY = os.environ["DJANGO_SECRET_KEY"]  # ')
    settings.write_text("import os\n" + text)
    urls = site / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text()
        + "\nimport os\nfrom django.http import HttpResponse\n"
        + "urlpatterns.append(path('env/<name>', lambda request, name: HttpResponse(os.environb[name.encode()])))\n"
    )


def test_settings_reading_the_secret_key_serve_with_only_its_file(site: Path, serve: Any) -> None:
    reads_key_from_environment(site)
    key = site / "key"
    key.write_bytes(KEY + b"\n\n")
    (site / "blob").write_bytes(BLOB + b"\n")
    env = {"DJANGO_SECRET_KEY_FILE": str(key), "BLOB_FILE": str(site / "blob")}
    server = serve("--access-log", DJSERVE_LOG_FORMAT="json", **env)
    assert get(server.url("/env/DJANGO_SECRET_KEY")) == (200, KEY)
    assert get(server.url("/env/BLOB")) == (200, BLOB)
    _, err = server.stop()
    assert "/env/BLOB" in err  # the access log was on
    assert "spaces" not in err


def test_value_and_file_both_set_names_both(site: Path, tmp_path: Path) -> None:
    (tmp_path / "key").write_text("from-file")
    env = {**SETTINGS, "DJANGO_SECRET_KEY": "direct", "DJANGO_SECRET_KEY_FILE": str(tmp_path / "key")}
    result = djserve("check", cwd=site, env=env)
    assert result.code == 78
    assert result.lines == [
        "DJANGO_SECRET_KEY_FILE (environment): DJANGO_SECRET_KEY is set too; "
        "set either DJANGO_SECRET_KEY or DJANGO_SECRET_KEY_FILE"
    ]


def test_unreadable_file_names_the_variable_and_the_path(site: Path, tmp_path: Path) -> None:
    missing = tmp_path / "absent"
    result = djserve("check", cwd=site, env={**SETTINGS, "REDIS_PASSWORD_FILE": str(missing)})
    assert result.code == 78
    assert result.lines == [f"REDIS_PASSWORD_FILE (environment): cannot read {missing}: No such file or directory"]
    result = djserve("check", cwd=site, env={**SETTINGS, "REDIS_PASSWORD_FILE": str(tmp_path)})
    assert result.lines == [f"REDIS_PASSWORD_FILE (environment): cannot read {tmp_path}: Is a directory"]


def test_values_from_files_are_redacted_in_config_and_command(site: Path, tmp_path: Path) -> None:
    (tmp_path / "path").write_text("/secret-health\n")
    env = {**SETTINGS, "DJSERVE_HEALTH_PATH_FILE": str(tmp_path / "path")}
    assert config(site, **env)["health_path"] == "<redacted>"
    assert sources(site, **env)["health_path"] == "env:DJSERVE_HEALTH_PATH_FILE"
    result = djserve("config", cwd=site, env=env)
    assert result.code == 0 and "secret-health" not in result.out
    result = djserve("command", cwd=site, env=env)
    assert result.code == 0 and "secret-health" not in result.out and "DJSERVE_HEALTH_PATH=<redacted>" in result.out


def test_a_value_from_a_file_never_appears_in_problems(site: Path, tmp_path: Path) -> None:
    (tmp_path / "workers").write_text("hunter2\n")
    (tmp_path / "key").write_text("hunter3\n")
    settings = site / "mysite" / "settings.py"
    settings.write_text(settings.read_text() + '\nimport os\nPORT = int(os.environ["DJANGO_SECRET_KEY"])\n')
    files = {"UVICORN_WORKERS_FILE": str(tmp_path / "workers"), "DJANGO_SECRET_KEY_FILE": str(tmp_path / "key")}
    result = djserve("check", cwd=site, env={**SETTINGS, **files})
    assert result.code == 78
    assert "hunter" not in result.err
    assert "UVICORN_WORKERS_FILE (environment): not a valid workers (the file's value is not shown)" in result.lines
    assert any("invalid literal for int() with base 10: '<redacted>'" in line for line in result.lines)


def test_a_served_setting_is_read_from_its_file(tmp_path: Path, serve: Any) -> None:
    (tmp_path / "health").write_text("/alive\n")
    server = serve(ready="/alive", DJSERVE_HEALTH_PATH_FILE=str(tmp_path / "health"))
    assert get(server.url("/alive")) == (200, b"ok\n")


def test_variables_that_are_paths_by_their_own_meaning_are_not_expanded(site: Path, tmp_path: Path) -> None:
    dotenv = tmp_path / "app.env"
    dotenv.write_text("SOMETHING=1\n")
    # uvicorn's --env-file and OpenSSL's CA bundle: paths, not secrets; neither UVICORN_ENV nor SSL_CERT appears.
    env = {**SETTINGS, "UVICORN_ENV_FILE": str(dotenv), "SSL_CERT_FILE": str(tmp_path / "absent.pem")}
    assert config(site, **env)["env_file"] == str(dotenv)


PRINT_ENV = "import os, sys; sys.stdout.buffer.write(os.environb[sys.argv[1].encode()])"


def test_a_pass_through_command_reads_variables_from_their_files(tmp_path: Path) -> None:
    """``docker run IMAGE python manage.py migrate``, or the chart's migration Job, with DATABASE_URL_FILE."""
    (tmp_path / "url").write_bytes(b"postgres://app:s3cret@db/app\n")
    env = {"DATABASE_URL_FILE": str(tmp_path / "url")}
    result = djserve("python", "-c", PRINT_ENV, "DATABASE_URL", cwd=tmp_path, env=env)
    assert (result.code, result.out) == (0, "postgres://app:s3cret@db/app")
    result = djserve("python", "-c", "import os; print('DATABASE_URL_FILE' in os.environ)", cwd=tmp_path, env=env)
    assert result.out == "False\n"  # as file_env unsets it


def test_a_pass_through_command_with_an_unreadable_file_exits_78_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    result = djserve("python", "-c", "print('ran')", cwd=tmp_path, env={"DATABASE_URL_FILE": str(missing)})
    assert (result.code, result.out) == (78, "")
    assert result.lines == [f"DATABASE_URL_FILE (environment): cannot read {missing}: No such file or directory"]


def test_a_pass_through_command_keeps_path_variables_and_refuses_a_variable_set_both_ways(tmp_path: Path) -> None:
    (tmp_path / "url").write_text("s3cret-value")
    env = {"SSL_CERT_FILE": "/nonexistent/bundle.pem", "DATABASE_URL_FILE": str(tmp_path / "url"), "DATABASE_URL": "x"}
    result = djserve("python", "-c", "print('ran')", cwd=tmp_path, env=env)
    assert result.code == 78
    assert result.lines == [
        "DATABASE_URL_FILE (environment): DATABASE_URL is set too; set either DATABASE_URL or DATABASE_URL_FILE"
    ]
    del env["DATABASE_URL"]
    result = djserve("python", "-c", PRINT_ENV, "SSL_CERT_FILE", cwd=tmp_path, env=env)
    assert (result.code, result.out) == (0, "/nonexistent/bundle.pem")
