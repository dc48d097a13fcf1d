"""Serving: the resolved configuration, then uvicorn under djserve's supervisor.

This runs in the serving process (PID 1's child under tini, the workers' parent). It imports uvicorn and
djserve's supervisor, and on purpose nothing that resolves settings or loads Django: the validating
child (``djserve.preflight``) hands it a ``Launch``, plain data.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

EX_CONFIG = 78  # sysexits.h: configuration error


@dataclass(frozen=True)
class Launch:
    values: dict[str, Any]  # every setting's value, by name
    where: dict[str, str]  # where each value came from, for problems found while serving
    config: dict[str, Any]  # uvicorn.Config's arguments
    environ: dict[str, str]  # for the workers; see djserve.worker
    cleared: list[str]  # removed from the environment before ``environ`` is added
    sys_path: list[str]


def serve(launch: Launch) -> None:
    """Serve under djserve's supervisor, even with one worker: a worker that dies, recycles or gets stuck
    is replaced, and this process stays. ``reload`` uses uvicorn's reloader."""
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    from djserve.server import Server
    from djserve.supervisor import Supervisor

    for var in launch.cleared:
        os.environ.pop(var, None)
    os.environ.update(launch.environ)
    if launch.values["metrics"]:
        _prepare_metrics(launch.where["metrics"])
    sys.path[:] = launch.sys_path
    config = uvicorn.Config(**launch.config)
    if config.should_reload:
        ChangeReload(config, target=Server(config).run, sockets=[config.bind_socket()]).run()
    else:
        Supervisor(config, sockets=[config.bind_socket()]).run()


def _prepare_metrics(where: str) -> None:
    """The multiprocess directory, before any worker imports prometheus_client."""
    from djserve import metrics

    try:
        metrics.prepare_directory()
    except OSError as error:
        # A read-only root with no tmpfs at /tmp, say: a problem of the container's configuration.
        print(
            f"{where}: cannot prepare the metrics directory ({error}); mount a tmpfs at /tmp, set "
            f"{metrics.DIRECTORY} to a writable directory, or set metrics = false",
            file=sys.stderr,
        )
        sys.exit(EX_CONFIG)
