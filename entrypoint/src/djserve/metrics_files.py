"""The layout of the metrics directory, which the serving process and the workers share.

Each worker writes prometheus_client's files, ``<kind>_<pid>.db`` (``djserve.app.observe``). When a worker
is gone, the serving process renames its files that keep counting ``<kind>_dead-<pid>.db``
(``djserve.serve.metrics_dir``), and a worker folds those into one ``<kind>_merged.db`` per kind. Names
that still end in ``.db`` are still read by prometheus_client's collector, which ignores what follows the
kind (and the mode, for gauges) in a name.

A scrape holds ``lock`` shared while it reads the files; renaming and folding hold it exclusively.

Standard library only: the serving process imports it, and must not import prometheus_client.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

DEAD = "dead-"
MERGED = "merged"
# Files whose values add up (or keep their extreme, or their latest) over processes, which is why a dead
# worker's fold into one set. ``gauge_all`` keeps one series per pid, dead ones included, by design; the
# live gauges' files are removed.
MERGED_KINDS = ("counter", "histogram", "summary", "gauge_sum", "gauge_max", "gauge_min", "gauge_mostrecent")


@contextlib.contextmanager
def locked(directory: str | Path, operation: int) -> Iterator[bool]:
    """The directory's lock, ``fcntl.LOCK_SH`` or ``LOCK_EX`` (``| LOCK_NB`` not to wait): yields whether it
    is held."""
    fd = os.open(Path(directory) / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, operation)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # releases the lock
