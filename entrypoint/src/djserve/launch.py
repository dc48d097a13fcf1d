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


@dataclass(frozen=True)
class Launch:
    values: dict[str, Any]  # every setting's value, by name
    config: dict[str, Any]  # uvicorn.Config's arguments
    environ: dict[str, str]  # for the workers; see djserve.worker
    sys_path: list[str]


def serve(launch: Launch) -> None:
    """Serve under djserve's supervisor, even with one worker: a worker that dies, recycles or gets stuck
    is replaced, and this process stays. ``reload`` uses uvicorn's reloader."""
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    from djserve.server import Server
    from djserve.supervisor import Supervisor

    os.environ.update(launch.environ)
    sys.path[:] = launch.sys_path
    config = uvicorn.Config(**launch.config)
    if config.should_reload:
        ChangeReload(config, target=Server(config).run, sockets=[config.bind_socket()]).run()
    else:
        Supervisor(config, sockets=[config.bind_socket()]).run()
