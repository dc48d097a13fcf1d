"""``djserve command``: one shell line that starts the same server with plain uvicorn, and what it lacks.

uvicorn's CLI selects no supervisor or ``Server`` class, so the line serves the same app with the same
options, under uvicorn's own supervisor; what only djserve's does is said beside it (``not_in_the_line``).
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Mapping
from typing import Any

from djserve.config.model import KitConfig
from djserve.config.options import REGISTRY, cli_default
from djserve.config.uvicorn_args import FACTORY, uvicorn_options, worker_config
from djserve.defaults import REDACTED
from djserve.handoff import WorkerConfig

# uvicorn reads these from the environment when they are not given, so they are always spelled out.
ALWAYS = frozenset({"workers", "forwarded_allow_ips"})


def _flags(name: str, value: Any, *, secret: bool) -> list[str]:
    param = REGISTRY[name].param
    opt = param.opts[0]
    if getattr(param, "is_flag", False):
        if value is None:
            return []
        secondary = getattr(param, "secondary_opts", [])
        return [opt] if value else secondary[:1]
    if secret and value is not None:
        return [opt, REDACTED]
    if REGISTRY[name].multiple:
        return [part for item in value for part in (opt, str(item))]
    return [] if value is None else [opt, str(value)]


def _worker_environ(config: KitConfig, environ: Mapping[str, str]) -> list[str]:
    """The hand-off's variables that differ from what a worker reads when they are missing, or that the
    environment sets (it would otherwise win)."""
    worker, missing = worker_config(config), WorkerConfig()
    written = worker.to_environ()
    shown = []
    for name, var in WorkerConfig.variables().items():
        if var not in written or (getattr(worker, name) == getattr(missing, name) and var not in environ):
            continue
        secret = name in config.values and config.values[name].secret
        shown.append(f"{var}={REDACTED if secret else shlex.quote(written[var])}")
    return shown


def render(config: KitConfig, environ: Mapping[str, str] = os.environ) -> str:
    args = ["--factory"]
    for name, value in uvicorn_options(config).items():
        # An UVICORN_* variable left in the environment would otherwise win over a default.
        given = f"UVICORN_{name.upper()}" in environ
        if value != cli_default(REGISTRY[name].param) or name in ALWAYS or given:
            args += _flags(name, value, secret=config.values[name].secret)
    return " ".join([*_worker_environ(config, environ), shlex.join(["uvicorn", *args, FACTORY])])


def not_in_the_line(config: KitConfig) -> list[str]:
    """What ``djserve serve`` does with this configuration that the printed uvicorn line does not."""
    missing = ["djserve's supervisor and Server: no drain before a worker stops, no stuck event loop found"]
    if config["preload"]:
        missing.append("preload: each worker imports the app itself; none is forked from a preloaded process")
    limits = [name for name in ("max_worker_memory", "max_worker_lifetime") if config[name] is not None]
    if limits:
        missing.append(f"{' and '.join(limits)}: no worker is recycled for it")
    return missing
