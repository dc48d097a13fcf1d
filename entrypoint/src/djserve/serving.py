"""Running uvicorn in this process, with the exact settings that ``djserve command`` prints."""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from djserve.discovery import use_app_dir
from djserve.logs import JSON_CONFIG
from djserve.options import SETTINGS
from djserve.settings import Settings
from djserve.worker import FACTORY, HANDOFF

# Kit concerns that uvicorn receives in another form: the app is wrapped by djserve's factory.
NOT_PASSED = frozenset({"app", "app_dir", "factory"})


def handoff(settings: Settings) -> dict[str, str]:
    """Environment for the workers; see ``djserve.worker``."""
    env = {}
    for var, name in HANDOFF:
        value = settings[name]
        if value is not None and value is not False:
            env[var] = "true" if value is True else str(value)
    return env


# djserve's subclasses of uvicorn's HTTP protocols: the header deadline, size limits and probe-aware
# concurrency limit (see ``djserve.protocols``). A ``module:attr`` the user gave is left alone.
HTTP_PROTOCOLS = {"httptools": "djserve.protocols:HttpToolsProtocol", "h11": "djserve.protocols:H11Protocol"}


def http_protocol(http: str) -> str:
    """The ``--http`` import path for uvicorn's ``http`` setting; ``auto`` chooses as uvicorn does."""
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return HTTP_PROTOCOLS.get(http, http)


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options as its CLI spells their values, with the kit's log format folded in."""
    options = {
        name: settings[name]
        for name, setting in SETTINGS.items()
        if setting.group == "uvicorn" and name not in NOT_PASSED
    }
    options["interface"] = "asgi3"  # the app uvicorn sees is djserve's ASGI wrapper, whatever Django's is
    options["http"] = http_protocol(options["http"])
    if settings["log_format"] == "json":
        options["log_config"] = JSON_CONFIG
    return options


def serve(settings: Settings) -> None:
    """Serve under djserve's supervisor, even with one worker: a worker that dies, recycles or gets stuck
    is replaced, and this process, PID 1 in a container, stays. ``reload`` uses uvicorn's reloader."""
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG
    from uvicorn.supervisors import ChangeReload

    from djserve.server import Server
    from djserve.supervisor import Supervisor

    os.environ.update(handoff(settings))
    use_app_dir(settings["app_dir"])
    options = uvicorn_options(settings)
    options["headers"] = [tuple(header.split(":", 1)) for header in options["headers"]]
    for name in ("reload_dirs", "reload_includes", "reload_excludes"):
        options[name] = list(options[name]) or None
    if options["log_config"] is None:
        options["log_config"] = LOGGING_CONFIG
    config = uvicorn.Config(FACTORY, factory=True, **options)
    if config.should_reload:
        ChangeReload(config, target=Server(config).run, sockets=[config.bind_socket()]).run()
    else:
        Supervisor(config, sockets=[config.bind_socket()]).run()
