"""uvicorn's options, exactly as ``djserve command`` prints them and as ``djserve serve`` runs them."""

from __future__ import annotations

import importlib.util
import sys
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from djserve.launch import Launch
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


def launch(settings: Settings) -> Launch:
    """What the serving process needs, so that it imports neither the settings machinery nor Django."""
    options = uvicorn_options(settings)
    options["headers"] = [tuple(header.split(":", 1)) for header in options["headers"]]
    for name in ("reload_dirs", "reload_includes", "reload_excludes"):
        options[name] = list(options[name]) or None
    if options["log_config"] is None:
        options["log_config"] = LOGGING_CONFIG
    return Launch(
        values={name: effective.value for name, effective in settings.values.items()},
        where={name: effective.where for name, effective in settings.values.items()},
        config={"app": FACTORY, "factory": True, **options},
        environ=handoff(settings),
        # A handed-off setting the user's environment turned on, and a later layer off, must not reach workers.
        cleared=[var for var, _ in HANDOFF],
        # The workers are spawned with the serving process's sys.path: they import the app from where
        # the validating process found it (it added app_dir there).
        sys_path=list(sys.path),
    )
