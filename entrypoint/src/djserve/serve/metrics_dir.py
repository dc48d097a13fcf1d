"""The serving process's part of the metrics: the directory where every worker writes its values.

prometheus_client's multiprocess mode sums what all workers record (``djserve.app.observe``). The serving
process owns the directory: ``prepare()`` before the first worker starts, and ``worker_exited(pid)`` for
each worker that is gone, so its in-flight and WebSocket gauges stop counting while its counters and
histogram are kept. prometheus_client itself is never imported here.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from djserve.defaults import METRICS_DIRECTORY_VARIABLE as DIRECTORY


def prepare(environ: MutableMapping[str, str] = os.environ) -> Path:
    """Before any worker starts: an empty directory for the workers' value files.

    A ``PROMETHEUS_MULTIPROC_DIR`` the user set is used and emptied of the last run's files; otherwise a
    fresh directory under the temporary directory (the container's tmpfs) is created and set.
    """
    if environ.get(DIRECTORY):
        path = Path(environ[DIRECTORY])
        path.mkdir(parents=True, exist_ok=True)
        for stale in path.glob("*.db"):
            stale.unlink()
    else:
        path = Path(tempfile.mkdtemp(prefix="djserve-metrics-"))
        environ[DIRECTORY] = str(path)
        atexit.register(shutil.rmtree, path, ignore_errors=True)  # the serving process's exit; workers never run it
    return path


def worker_exited(pid: int) -> None:
    """For each worker that has exited: drop its live gauges, keep its counts.

    This is prometheus_client's ``multiprocess.mark_process_dead`` (its live gauge modes all start with
    ``live``), spelled out because importing prometheus_client would add about 14 MB to the supervisor,
    which stays under 30 MB (bench/findings.md).
    """
    directory = os.environ.get(DIRECTORY)
    if directory:
        for live in Path(directory).glob(f"gauge_live*_{pid}.db"):
            live.unlink(missing_ok=True)
