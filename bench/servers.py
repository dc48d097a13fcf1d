"""The contenders, all in one image (the production demo plus the other servers), one worker each.

Every hand-written command uses the settings the production preset resolves to, so the figures
compare servers, not configurations. WSGI servers get the thread count djserve's WSGI mode uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench.containers import PORT, Spec

SERVERS_IMAGE = "djserve-bench:servers"
ASGI_APP = "demo.asgi:application"
WSGI_APP = "demo.wsgi:application"
# a2wsgi's default pool, which djserve's WSGI mode keeps unless DJSERVE_WSGI_THREADS is set.
WSGI_THREADS = 10
BIND = f"0.0.0.0:{PORT}"

# The production preset, spelled by hand (entrypoint/src/djserve/presets.toml).
UVICORN_PRODUCTION = tuple(
    f"--host 0.0.0.0 --port {PORT} --loop uvloop --http httptools --no-access-log --lifespan off "
    "--no-server-header --timeout-graceful-shutdown 20".split()
)
# The preset's limit-max-requests-jitter, which bare uvicorn needs spelled out to recycle alike.
PRESET_JITTER = 1000
GRANIAN = tuple(f"granian --host 0.0.0.0 --port {PORT} --workers 1 --http 1".split())
GUNICORN = ("gunicorn", "--bind", BIND, "--workers", "1")


def uvicorn_command(*extra: str, workers: int = 1) -> tuple[str, ...]:
    """The best hand-written uvicorn command: the production preset's settings plus `extra` flags."""
    return ("uvicorn", ASGI_APP, "--workers", str(workers), *UVICORN_PRODUCTION, *extra)


@dataclass(frozen=True)
class Server:
    name: str
    interface: str
    paths: tuple[str, ...]
    spec: Spec


def _asgi(name: str, *command: str, env: dict[str, str] | None = None) -> Server:
    return Server(name, "asgi", ("/async", "/sync"), Spec(SERVERS_IMAGE, command, env or {}))


def _wsgi(name: str, *command: str, env: dict[str, str] | None = None) -> Server:
    return Server(name, "wsgi", ("/sync",), Spec(SERVERS_IMAGE, command, env or {}))


SERVERS = (
    # The image's own command: `tini -- djserve serve` with the production preset.
    _asgi("djserve"),
    _asgi("uvicorn", *uvicorn_command()),
    # What tiangolo's uvicorn-gunicorn images run.
    _asgi("gunicorn+uvicorn-worker", *GUNICORN, "--worker-class", "uvicorn_worker.UvicornWorker", ASGI_APP),
    _asgi("granian-asgi", *GRANIAN, "--interface", "asginl", "--loop", "uvloop", ASGI_APP),
    _wsgi("djserve-wsgi", env={"DJSERVE_INTERFACE": "wsgi"}),
    _wsgi("gunicorn-gthread", *GUNICORN, "--worker-class", "gthread", "--threads", str(WSGI_THREADS), WSGI_APP),
    _wsgi("granian-wsgi", *GRANIAN, "--interface", "wsgi", "--blocking-threads", str(WSGI_THREADS), WSGI_APP),
)
