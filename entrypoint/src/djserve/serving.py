"""Running uvicorn in this process, with the exact settings that ``djserve command`` prints."""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

from uvicorn.supervisors import Multiprocess

from djserve import metrics
from djserve.cli import EX_CONFIG
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


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's options as its CLI spells their values, with the kit's log format folded in."""
    options = {
        name: settings[name]
        for name, setting in SETTINGS.items()
        if setting.group == "uvicorn" and name not in NOT_PASSED
    }
    options["interface"] = "asgi3"  # the app uvicorn sees is djserve's ASGI wrapper, whatever Django's is
    if settings["log_format"] == "json":
        options["log_config"] = JSON_CONFIG
    return options


class Supervisor(Multiprocess):
    """uvicorn's supervisor, telling ``djserve.metrics`` about every worker that is gone.

    uvicorn 0.54 replaces dead workers in ``keep_subprocess_alive`` and retires old ones in
    ``restart_all`` (SIGHUP); both change ``self.processes``, so a pid missing afterwards has exited.
    """

    def keep_subprocess_alive(self) -> None:
        before = {process.pid for process in self.processes}
        super().keep_subprocess_alive()
        self._exited(before)

    def restart_all(self) -> None:
        before = {process.pid for process in self.processes}
        super().restart_all()
        self._exited(before)

    def _exited(self, before: set[int | None]) -> None:
        for pid in before - {process.pid for process in self.processes}:
            if pid is not None:
                metrics.worker_exited(pid)


def serve(settings: Settings) -> None:
    import uvicorn
    from uvicorn.config import LOGGING_CONFIG, STARTUP_FAILURE
    from uvicorn.supervisors import ChangeReload

    if settings["serve_static"]:
        from djserve import static

        static.warn_if_missing()
    if settings["metrics"]:
        try:
            metrics.prepare_directory()  # before any worker imports prometheus_client
        except OSError as error:
            # A read-only root with no tmpfs at /tmp, say: a problem of the container's configuration.
            print(
                f"{settings.where('metrics')}: cannot prepare the metrics directory ({error}); mount a tmpfs at "
                f"/tmp, set {metrics.DIRECTORY} to a writable directory, or set metrics = false",
                file=sys.stderr,
            )
            sys.exit(EX_CONFIG)
    for var, _ in HANDOFF:  # a value the user's environment gave, overridden to off, must not reach workers
        os.environ.pop(var, None)
    os.environ.update(handoff(settings))
    options = uvicorn_options(settings)
    options["headers"] = [tuple(header.split(":", 1)) for header in options["headers"]]
    for name in ("reload_dirs", "reload_includes", "reload_excludes"):
        options[name] = list(options[name]) or None
    if options["log_config"] is None:
        options["log_config"] = LOGGING_CONFIG
    config = uvicorn.Config(FACTORY, factory=True, **options)
    server = uvicorn.Server(config)
    if config.should_reload:
        ChangeReload(config, target=server.run, sockets=[config.bind_socket()]).run()
    elif config.workers > 1 or config.limit_max_requests is not None:
        # Under the supervisor a worker that recycles is replaced; alone, it would stop the container.
        Supervisor(config, sockets=[config.bind_socket()]).run()
    else:
        # uvicorn re-raises the SIGTERM it handled once it has shut down gracefully; for a container
        # that finished its requests as asked, that is a clean exit.
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))
        server.run()
        if not server.started:
            sys.exit(STARTUP_FAILURE)
