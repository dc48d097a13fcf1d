"""The serving process's part of the metrics: the directory where every worker writes its values.

prometheus_client's multiprocess mode sums what all workers record (``djserve.app.observe``): each writes
its own files, ``<kind>_<pid>.db``. The serving process owns the directory: it is reserved before the
validating child starts (``reserve``), set in the environment once the configuration says metrics are on
(``use``, before the app import, which may import prometheus_client), and ``worker_exited(pid)`` is called
for each worker that is gone:

- its live gauges (in-flight requests, open WebSockets, memory) stop counting: their files are removed;
- its counters and histograms are kept: their files are renamed, still counted, and a worker folds them
  into one set (``djserve.metrics_files``), so the number of files stays bounded whatever the number of
  workers that came and went.

The renaming holds the directory's lock, which a scrape holds while it reads; the serving process never
waits for it: what it cannot rename now, it renames in a later round (``flush``).

prometheus_client itself is never imported here: it would add about 14 MB to the supervisor, which stays
under 30 MB (bench/findings.md).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import MutableMapping
from pathlib import Path

from djserve.defaults import METRICS_DIRECTORY_VARIABLE as DIRECTORY
from djserve.metrics_files import DEAD, MERGED_KINDS, locked

SHARED_MEMORY = "/dev/shm"
_dead: list[int] = []  # workers whose files are still to be renamed


def home() -> str | None:
    """Where the metrics go when the user names no directory: away from request bodies if possible.

    prometheus_client writes through ``mmap`` into files it grows as series appear, and a page it cannot
    get on a full filesystem is a SIGBUS that kills the worker, and every replacement after it. Uploads
    fill the temporary directory (``/tmp``); ``/dev/shm`` is another tmpfs in every Docker and Kubernetes
    container, writable under a read-only root, that requests never write to. None: the temporary
    directory, when ``/dev/shm`` is missing, read-only, or the same filesystem.
    """
    try:
        apart = Path(SHARED_MEMORY).stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev
    except OSError:
        return None
    return SHARED_MEMORY if apart and os.access(SHARED_MEMORY, os.W_OK | os.X_OK) else None


def reserve(environ: MutableMapping[str, str] = os.environ) -> str | OSError:
    """Before the validating child: the directory for this run, the user's ``PROMETHEUS_MULTIPROC_DIR`` or
    a fresh one (see ``home``), removed when this process exits.

    It is not in the environment yet: the child puts it there with ``use`` once metrics are known to be
    on. An error is returned, for the child to report if they are.
    """
    if environ.get(DIRECTORY):
        return environ[DIRECTORY]
    try:
        path = tempfile.mkdtemp(prefix="djserve-metrics-", dir=home())
    except OSError as error:
        return error
    atexit.register(shutil.rmtree, path, ignore_errors=True)  # the serving process's exit; no child runs it
    return path


def use(reserved: str | OSError, environ: MutableMapping[str, str] = os.environ) -> None:
    """With metrics on, before anything writes a value: the directory exists, holds no last run's values,
    and is in the environment. Raises OSError if it cannot be."""
    if isinstance(reserved, OSError):
        raise reserved
    path = Path(reserved)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink()
    environ[DIRECTORY] = str(path)


def worker_exited(pid: int) -> None:
    """For each worker that has exited: drop its live gauges, keep its counts (see the module's docstring).

    The first part is prometheus_client's ``multiprocess.mark_process_dead`` (its live gauge modes all start
    with ``live``), spelled out to keep prometheus_client out of this process.
    """
    directory = os.environ.get(DIRECTORY)
    if directory:
        for live in Path(directory).glob(f"gauge_live*_{pid}.db"):
            live.unlink(missing_ok=True)
        _dead.append(pid)
        flush()


def flush() -> None:
    """Rename the files of the workers that exited, if no scrape holds the lock now."""
    directory = os.environ.get(DIRECTORY)
    if not _dead or not directory:
        return
    with locked(directory, fcntl.LOCK_EX | fcntl.LOCK_NB) as held:
        if not held:
            return
        for pid in _dead:
            for kind in MERGED_KINDS:
                path = Path(directory) / f"{kind}_{pid}.db"
                with contextlib.suppress(FileNotFoundError):
                    path.rename(path.with_name(f"{kind}_{DEAD}{pid}.db"))
        _dead.clear()
