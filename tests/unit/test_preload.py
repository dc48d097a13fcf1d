"""preload: the app is imported once, in the process that validated it, and every worker is forked from it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import Load, Logged, djserve, free_port, get, wait_until

PRODUCTION = {"DJANGO_SETTINGS_MODULE": "mysite.settings", "DJSERVE_PRESET": "production"}


def parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def alive(pid: int) -> bool:
    """Running: a zombie waiting for its parent to reap it is not."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def note_imports(site: Path) -> None:
    """asgi.py appends its process's pid to $IMPORT_LOG each time it is imported."""
    asgi = site / "mysite" / "asgi.py"
    asgi.write_text(f"import os\nopen(os.environ['IMPORT_LOG'], 'a').write(f'{{os.getpid()}}\\n')\n{asgi.read_text()}")


@pytest.mark.parametrize(("preload", "imports"), [("--preload", 1), ("--no-preload", 3)])
def test_workers_are_forked_from_the_process_that_imported_the_app_once(
    site: Path, tmp_path: Path, logged: Callable[..., Logged], preload: str, imports: int
) -> None:
    note_imports(site)
    log = tmp_path / "imports"
    server = logged(preload, workers=2, IMPORT_LOG=str(log), **PRODUCTION)
    for _ in range(4):
        assert get(server.url("/"))[0] == 200
    workers = server.workers()
    assert len(log.read_text().split()) == imports, log.read_text()  # the validating child's, then each worker's
    preloaded = server.preloaded()
    if preload == "--no-preload":
        assert preloaded is None
        return
    assert preloaded is not None
    assert log.read_text().split() == [str(preloaded)]  # the validating child became the preloaded process
    assert parent(preloaded) == server.process.pid
    assert [parent(worker) for worker in workers] == [preloaded, preloaded]


def test_a_project_that_queries_at_import_is_served_with_preload(site: Path, logged: Callable[..., Logged]) -> None:
    """Each worker imports the app inside its running event loop, where Django refuses a query; the preloaded
    process imports it outside any loop."""
    asgi = site / "mysite" / "asgi.py"
    asgi.write_text(
        asgi.read_text() + "\nfrom django.db import connection\n"
        "with connection.cursor() as cursor:\n    cursor.execute('SELECT 1')\n"
    )
    server = logged(workers=2, **PRODUCTION)
    assert get(server.url("/"))[0] == 200
    assert "SynchronousOnlyOperation" not in server.text()


@pytest.fixture(scope="module")
def postgres() -> Iterator[int]:
    """A throwaway PostgreSQL cluster (Debian's binaries, run as the postgres user), on a free port."""
    pytest.importorskip("psycopg", reason="no PostgreSQL driver (psycopg) in this environment")
    # Debian keeps the server's programs off PATH, under its major version (`make unit` installs them).
    found = shutil.which("pg_ctl") or next(map(str, Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")), None)
    if found is None:
        pytest.skip("no PostgreSQL server (pg_ctl) on this machine: `make unit` installs Debian's")
    root = Path(tempfile.mkdtemp(prefix="djserve-postgres-"))  # not pytest's: the postgres user must reach it
    data, port = root / "data", free_port()
    as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_postgres:
        shutil.chown(root, "postgres")
    pg_ctl = [*as_postgres, found, "-D", str(data)]
    subprocess.run([*pg_ctl, "-o", "-A trust -U postgres", "initdb"], check=True, capture_output=True)
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1"
    log = ["-l", str(root / "log")]  # the server keeps no pipe of ours open
    subprocess.run([*pg_ctl, *log, "-o", options, "-w", "start"], check=True, capture_output=True)
    yield port
    subprocess.run([*pg_ctl, "-m", "fast", "stop"], capture_output=True)
    shutil.rmtree(root, ignore_errors=True)


BACKEND_VIEWS = """
from django.db import connection
from django.http import JsonResponse

def backend(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid(), (SELECT count(*) FROM pg_stat_activity WHERE pid = %s)", [IMPORTED])
        pid, still_open = cursor.fetchone()
    return JsonResponse({"backend": pid, "import_connection_open": still_open, "worker": os.getpid()})

urlpatterns.append(path("backend", backend))
"""


def test_a_connection_opened_at_import_is_not_shared_by_the_workers(
    site: Path, logged: Callable[..., Logged], postgres: int
) -> None:
    settings = site / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text() + "\nDATABASES = {'default': {'ENGINE': 'django.db.backends.postgresql', "
        f"'NAME': 'postgres', 'USER': 'postgres', 'HOST': '127.0.0.1', 'PORT': {postgres}}}}}\n"
    )
    urls = site / "mysite" / "urls.py"
    urls.write_text(
        "import os\nfrom django.db import connection\n"
        "with connection.cursor() as cursor:\n    cursor.execute('SELECT pg_backend_pid()')\n"
        "    (IMPORTED,) = cursor.fetchone()\n" + urls.read_text() + BACKEND_VIEWS
    )
    asgi = site / "mysite" / "asgi.py"
    asgi.write_text(asgi.read_text() + "\nimport mysite.urls\n")  # the URLconf, and its query, at import
    server = logged(workers=2, **PRODUCTION)
    seen: dict[int, set[int]] = {}
    wait_until(
        lambda: len(seen) == 2 or bool(_note_backend(server, seen)),
        30,
        "both workers to answer /backend",
        pause=0,
    )
    backends = [pid for pids in seen.values() for pid in pids]
    assert len(set(backends)) == len(backends), seen  # no connection serves two workers


def _note_backend(server: Logged, seen: dict[int, set[int]]) -> bool:
    import json

    status, body = get(server.url("/backend"))
    assert status == 200, body
    answer = json.loads(body)
    assert answer["import_connection_open"] == 0  # the preloaded process closed it before forking
    seen.setdefault(answer["worker"], set()).add(answer["backend"])
    return False


GC_VIEW = """
import gc
from django.http import JsonResponse

def collector(request):
    return JsonResponse({"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()})

urlpatterns.append(path("gc", collector))
"""


@pytest.mark.parametrize("preload", ["--preload", "--no-preload"])
def test_workers_collect_garbage_and_never_scan_what_they_inherited(
    site: Path, logged: Callable[..., Logged], preload: str
) -> None:
    """Start-up imports run with the collector off: a worker that kept it off would never free a cycle, and one
    whose inherited objects were not frozen would write to every page it shares with the preloaded process."""
    import json

    urls = site / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + GC_VIEW)
    server = logged(preload, workers=2, **PRODUCTION)
    for _ in range(4):
        status, body = get(server.url("/gc"))
        assert status == 200, body
        answer = json.loads(body)
        assert answer["enabled"] is True
        # Django and the project, frozen before the fork; a spawned worker freezes nothing.
        assert (answer["frozen"] > 10_000) == (preload == "--preload"), answer


@pytest.mark.parametrize("preload", ["--preload", "--no-preload"])
def test_the_urlconf_is_imported_once_before_the_workers_fork(
    site: Path, tmp_path: Path, logged: Callable[..., Logged], preload: str
) -> None:
    """Django imports the URLconf on a process's first request: under preload, once, before the fork."""
    urls, log = site / "mysite" / "urls.py", tmp_path / "urlconf-imports"
    urls.write_text(f"import os\nopen(os.environ['URLS_LOG'], 'a').write(f'{{os.getpid()}}\\n')\n{urls.read_text()}")
    server = logged(preload, workers=2, URLS_LOG=str(log), **PRODUCTION)
    for _ in range(8):
        assert get(server.url("/admin/login/"))[0] == 200
    importers = [int(pid) for pid in log.read_text().split()]
    if preload == "--preload":
        assert importers == [server.preloaded()]
    else:  # each worker that served, on its first request
        assert importers and sorted(importers) == sorted(set(importers)) and set(importers) <= set(server.workers())


@pytest.mark.parametrize("preload", ["--preload", "--no-preload"])
def test_a_urlconf_that_fails_to_import_gets_the_answer_it_gets_without_preload(
    site: Path, logged: Callable[..., Logged], preload: str
) -> None:
    """Not a configuration error: Django answers 500 to each request that needs it, and the server serves on."""
    urls = site / "mysite" / "urls.py"
    urls.write_text(urls.read_text() + "\nraise ImportError('no module for these views')\n")
    server = logged(preload, workers=1, **PRODUCTION)
    assert get(server.url("/admin/login/"))[0] == 500
    assert get(server.url("/admin/login/"))[0] == 500
    warnings = [line for line in server.text().splitlines() if "the URLconf failed" in line]
    if preload == "--no-preload":
        assert warnings == []
        return
    assert len(warnings) == 1
    assert "ImportError: no module for these views" in warnings[0] and "urls.py, line" in warnings[0]


def test_a_project_that_starts_a_thread_falls_back_to_spawning_with_one_warning(
    site: Path, logged: Callable[..., Logged]
) -> None:
    settings = site / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text() + "\nimport threading, time\n"
        "threading.Thread(target=time.sleep, args=(3600,), name='sdk-flusher', daemon=True).start()\n"
    )
    server = logged(workers=2, **PRODUCTION)
    assert get(server.url("/"))[0] == 200
    (warning,) = [line for line in server.text().splitlines() if "preload" in line]
    assert warning.startswith("WARNING:") and "sdk-flusher" in warning and "preload = false" in warning
    assert server.preloaded() is None
    assert all(parent(worker) == server.process.pid for worker in server.workers())  # spawned, as without preload


def test_killed_workers_and_preloaded_process_are_replaced_and_serving_goes_on(
    logged: Callable[..., Logged],
) -> None:
    server = logged(workers=2, **PRODUCTION)
    first = server.preloaded()
    assert first is not None
    victim = server.workers()[0]
    os.kill(victim, signal.SIGKILL)
    killed = time.monotonic()
    wait_until(lambda: victim not in server.workers() and len(server.workers()) == 2, 1.0, "a forked replacement")
    wait_until(server.answers, 1.0, "the replacement to answer")
    assert time.monotonic() - killed < 1.0
    assert parent(next(w for w in server.workers())) == first

    with Load(server) as load:
        os.kill(first, signal.SIGKILL)
        wait_until(lambda: server.preloaded() not in (None, first), 10, "a new preloaded process")
        server.wait_for("ready: workers are forked from it", 10)
        time.sleep(0.5)
    assert load.failed == [] and load.answered > 0  # the workers served on meanwhile
    second = server.preloaded()
    assert second is not None
    orphans = server.workers()
    assert len(orphans) == 2 and all(parent(worker) == server.process.pid for worker in orphans)  # adopted
    os.kill(orphans[0], signal.SIGKILL)
    server.wait_for(f"Child process [{orphans[0]}] ended: killed by SIGKILL", 5)  # its status, reaped by us
    wait_until(lambda: len(server.workers()) == 2 and orphans[0] not in server.workers(), 2, "a replacement")
    (replacement,) = set(server.workers()) - set(orphans)
    assert parent(replacement) == second
    assert get(server.url("/"))[0] == 200


def test_kill_9_of_the_supervisor_leaves_no_worker_serving(tmp_path: Path, logged: Callable[..., Logged]) -> None:
    # Its metrics directory in the test's own: a killed supervisor cannot remove the one it creates.
    server = logged(workers=2, PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"), **PRODUCTION)
    preloaded = server.preloaded()
    assert preloaded is not None
    left = [preloaded, *server.workers()]
    os.kill(server.process.pid, signal.SIGKILL)
    wait_until(lambda: not any(alive(pid) for pid in left), 10, "the workers and the preloaded process to exit")


def test_preload_with_reload_is_a_configuration_error(site: Path) -> None:
    result = djserve("check", "--preload", "--reload", cwd=site, env={"DJANGO_SETTINGS_MODULE": "mysite.settings"})
    assert result.code == 78
    assert result.lines == [
        "--preload (command line): preload cannot run with reload (--reload (command line)): the reloader "
        "imports the app afresh on purpose; set preload = false"
    ]


def test_the_printed_command_says_it_does_not_preload(site: Path) -> None:
    result = djserve("command", cwd=site, env=PRODUCTION)
    assert result.code == 0
    assert "# not in this line: preload: each worker imports the app itself" in result.err
    assert result.out.count("\n") == 1  # the line itself is unchanged
