"""The contenders: djserve in each interface and the servers users would pick instead, one worker each.

All but the websocket preset run in one image (the production demo plus the other servers). The bare
uvicorn command is derived from `djserve command` (bench/commands.py), never spelled by hand, so it has
exactly the preset's settings. gunicorn gthread and granian's WSGI mode get djserve's `threads`.
"""

from __future__ import annotations

from dataclasses import dataclass

from bench import commands
from bench.containers import PORT, Spec

SERVERS_IMAGE = "djserve-bench:servers"
WEBSOCKET_IMAGE = "djserve-demo:websocket"
DB_PATH = "/db"
READY_PATH = "/sync"  # served by Django without the database, by every contender
ASGI_PATHS = ("/async", "/sync", DB_PATH)
WSGI_PATHS = ("/sync", DB_PATH)
# Django's advice for ASGI servers: no persistent connections, since each request's sync code may run
# in a new thread. Every ASGI server but djserve gets it.
DJANGO_ASGI_ADVICE = {"DJANGO_CONN_MAX_AGE": "0"}
# Django's other advice: its psycopg pool (the demo then turns persistent connections off).
PSYCOPG_POOL = {"DJANGO_DB_POOL": "1"}


@dataclass(frozen=True)
class Server:
    name: str
    interface: str  # as configured; djserve's comes from `djserve config`
    paths: tuple[str, ...]
    spec: Spec


def _djserve(name: str, image: str, env: dict[str, str], paths: tuple[str, ...]) -> Server:
    interface: str = commands.config(image, env)["interface"]
    return Server(name, interface, paths, Spec(image, (), env))


def contenders() -> tuple[Server, ...]:
    threads = str(commands.threads(SERVERS_IMAGE))
    asgi_app: str = commands.config(SERVERS_IMAGE, {"DJSERVE_INTERFACE": "asgi"})["app"]
    wsgi_app: str = commands.config(SERVERS_IMAGE, {"DJSERVE_INTERFACE": "wsgi"})["app"]
    uvicorn = commands.bare_uvicorn(SERVERS_IMAGE)
    gunicorn = ("gunicorn", "--bind", f"0.0.0.0:{PORT}", "--workers", "1")
    granian = ("granian", "--host", "0.0.0.0", "--port", str(PORT), "--workers", "1", "--http", "1")
    return (
        # The images' own command (`tini -- djserve serve`): the preset's default interface, then each mode.
        _djserve("djserve-hybrid", SERVERS_IMAGE, {}, ASGI_PATHS),
        _djserve("djserve-websocket", WEBSOCKET_IMAGE, {}, ASGI_PATHS),
        _djserve("djserve-asgi", SERVERS_IMAGE, {"DJSERVE_INTERFACE": "asgi"}, ASGI_PATHS),
        _djserve("djserve-wsgi", SERVERS_IMAGE, {"DJSERVE_INTERFACE": "wsgi"}, WSGI_PATHS),
        Server("uvicorn", "asgi", ASGI_PATHS, Spec(SERVERS_IMAGE, uvicorn, DJANGO_ASGI_ADVICE)),
        Server("uvicorn-pool", "asgi", (DB_PATH,), Spec(SERVERS_IMAGE, uvicorn, PSYCOPG_POOL)),
        # What tiangolo's uvicorn-gunicorn images run.
        Server(
            "gunicorn+uvicorn-worker",
            "asgi",
            ASGI_PATHS,
            Spec(
                SERVERS_IMAGE,
                (*gunicorn, "--worker-class", "uvicorn_worker.UvicornWorker", asgi_app),
                DJANGO_ASGI_ADVICE,
            ),
        ),
        # granian refuses more than one blocking thread under ASGI: Django's sync code runs in asgiref's threads.
        Server(
            "granian-asgi",
            "asgi",
            ASGI_PATHS,
            Spec(SERVERS_IMAGE, (*granian, "--interface", "asginl", "--loop", "uvloop", asgi_app), DJANGO_ASGI_ADVICE),
        ),
        Server(
            "gunicorn-gthread",
            "wsgi",
            WSGI_PATHS,
            Spec(SERVERS_IMAGE, (*gunicorn, "--worker-class", "gthread", "--threads", threads, wsgi_app)),
        ),
        Server(
            "granian-wsgi",
            "wsgi",
            WSGI_PATHS,
            Spec(SERVERS_IMAGE, (*granian, "--interface", "wsgi", "--blocking-threads", threads, wsgi_app)),
        ),
    )
