"""The serving process: the validating child's ``Launch``, then uvicorn under djserve's supervisor.

This is the container's main process under tini and the workers' parent. It imports uvicorn and
djserve's supervisor, and on purpose nothing that resolves configuration or loads Django: the validating
child (``djserve.preflight``) hands it a ``Launch``, plain data.
"""

from __future__ import annotations

import os
import sys

from djserve.defaults import EX_CONFIG, METRICS_DIRECTORY_VARIABLE
from djserve.handoff import Launch, WorkerConfig


def run(launch: Launch) -> None:
    """Serve under djserve's supervisor, even with one worker: a worker that dies, recycles or gets stuck
    is replaced, and this process stays. ``reload`` uses uvicorn's reloader."""
    import uvicorn
    from uvicorn.supervisors import ChangeReload

    from djserve.serve.server import Server
    from djserve.serve.supervisor import Supervisor

    # The workers read the hand-off alone: a variable of the user's environment that a later layer
    # overrode, or that this configuration leaves unset, must not reach them.
    for var in WorkerConfig.variables().values():
        os.environ.pop(var, None)
    os.environ.update(launch.worker.to_environ())
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
    from djserve.serve import metrics_dir

    try:
        metrics_dir.prepare()
    except OSError as error:
        # A read-only root with no tmpfs at /tmp, say: a problem of the container's configuration.
        print(
            f"{where}: cannot prepare the metrics directory ({error}); mount a tmpfs at /tmp, set "
            f"{METRICS_DIRECTORY_VARIABLE} to a writable directory, or set metrics = false",
            file=sys.stderr,
        )
        sys.exit(EX_CONFIG)
