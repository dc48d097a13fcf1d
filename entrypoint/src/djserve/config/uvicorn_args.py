"""uvicorn's options and the workers' hand-off, exactly as ``djserve command`` prints them and as
``djserve serve`` runs them."""

from __future__ import annotations

import importlib.util
import os
import sys
from typing import Any

from uvicorn.config import LOGGING_CONFIG

from djserve.config.model import KitConfig
from djserve.config.options import REGISTRY
from djserve.defaults import METRICS_DIRECTORY_VARIABLE
from djserve.handoff import Launch, WorkerConfig
from djserve.logs import JSON_CONFIG

# The workers' app factory and djserve's HTTP protocols, under the stable names ``djserve command`` prints.
FACTORY = "djserve.worker:create"
HTTP_PROTOCOLS = {"httptools": "djserve.protocols:HttpToolsProtocol", "h11": "djserve.protocols:H11Protocol"}
# Kit concerns that uvicorn receives in another form: the app is wrapped by djserve's factory.
NOT_PASSED = frozenset({"app", "app_dir", "factory"})


def worker_config(config: KitConfig) -> WorkerConfig:
    """What every worker needs of the resolved configuration."""
    values = {name: effective.value for name, effective in config.values.items()}
    return WorkerConfig.from_values({**values, "wsgi_app": config.wsgi_app and config.wsgi_app.value})


def http_protocol(http: str) -> str:
    """The ``--http`` import path for uvicorn's ``http`` setting; ``auto`` chooses as uvicorn does.

    djserve's subclasses add the header deadline, size limits and the probe-aware concurrency limit
    (``djserve.serve.protocols``). A ``module:attr`` the user gave is left alone.
    """
    if http == "auto":
        http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return HTTP_PROTOCOLS.get(http, http)


def uvicorn_options(config: KitConfig) -> dict[str, Any]:
    """uvicorn's options as its CLI spells their values, with the kit's log format folded in."""
    options = {
        name: config[name]
        for name, setting in REGISTRY.items()
        if setting.group == "uvicorn" and name not in NOT_PASSED
    }
    options["interface"] = "asgi3"  # the app uvicorn sees is djserve's ASGI wrapper, whatever Django's is
    options["http"] = http_protocol(options["http"])
    if config["log_format"] == "json":
        options["log_config"] = JSON_CONFIG
    return options


def launch(config: KitConfig) -> Launch:
    """What the serving process needs, so that it imports neither the configuration machinery nor Django."""
    options = uvicorn_options(config)
    options["headers"] = [tuple(header.split(":", 1)) for header in options["headers"]]
    for name in ("reload_dirs", "reload_includes", "reload_excludes"):
        options[name] = list(options[name]) or None
    if options["log_config"] is None:
        options["log_config"] = LOGGING_CONFIG
    return Launch(
        values={name: effective.value for name, effective in config.values.items()},
        where={name: effective.where for name, effective in config.values.items()},
        config={"app": FACTORY, "factory": True, **options},
        worker=worker_config(config),
        # The workers are spawned with the serving process's sys.path: they import the app from where
        # the validating process found it (it added app_dir there).
        sys_path=list(sys.path),
        # With metrics on, the validating child prepared it and put it in its environment before the app
        # import (djserve.preflight).
        metrics_directory=os.environ.get(METRICS_DIRECTORY_VARIABLE) if config["metrics"] else None,
    )
