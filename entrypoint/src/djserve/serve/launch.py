"""The serving process: the validating child's ``Launch``, then uvicorn under djserve's supervisor.

This is the container's main process under tini and the workers' supervisor. It imports uvicorn and
djserve's supervisor, and on purpose nothing that resolves configuration or loads Django: the validating
child (``djserve.preflight``) hands it a ``Launch``, plain data, and with ``preload`` stays alive as the
preloaded process the workers are forked from (``djserve.preloaded``).
"""

from __future__ import annotations

import os
import sys

from djserve.defaults import METRICS_DIRECTORY_VARIABLE
from djserve.handoff import Launch, WorkerConfig
from djserve.serve.forks import Preloaded


def run(launch: Launch, preloaded: Preloaded | None = None) -> None:
    """Serve under djserve's supervisor, even with one worker: a worker that dies, recycles or gets stuck
    is replaced, and this process stays. ``reload`` uses uvicorn's reloader."""
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    from djserve.serve.forks import Preloader
    from djserve.serve.server import Server
    from djserve.serve.supervisor import Limits, Supervisor

    # The workers read the hand-off alone: a variable of the user's environment that a later layer
    # overrode, or that this configuration leaves unset, must not reach them.
    for var in WorkerConfig.variables().values():
        os.environ.pop(var, None)
    os.environ.update(launch.worker.to_environ())
    if launch.metrics_directory is not None:
        os.environ[METRICS_DIRECTORY_VARIABLE] = launch.metrics_directory
    sys.path[:] = launch.sys_path
    config = uvicorn.Config(**launch.config)
    if config.should_reload:
        ChangeReload(config, target=Server(config).run, sockets=[config.bind_socket()]).run()
        return
    sockets = [config.bind_socket()]
    memory, lifetime = launch.values["max_worker_memory"], launch.values["max_worker_lifetime"]
    limits = Limits(memory=None if memory is None else memory << 20, lifetime=lifetime)
    preloader = None
    if preloaded is not None:
        start = {"config": launch.config, "environ": dict(os.environ), "sys_path": launch.sys_path}
        preloader = Preloader(preloaded, start, sockets)
    Supervisor(config, sockets, limits, preloader).run()
