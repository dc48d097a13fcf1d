"""State of this worker process that its server and its app stack share.

``DRAINING`` is set by the server when the worker stops (``djserve.serve.draining``) and read by the
probes, which then answer readiness 503 and ask keep-alive clients to reconnect elsewhere.

``restart_reason`` is set before the server starts, when this worker replaces one that ended
(``djserve.serve.supervisor``): why that one ended, for ``djserve_worker_restarts_total``.

``at_stop`` is run by the server once it has finished its requests: the metrics' last write.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

DRAINING = threading.Event()
restart_reason: str | None = None
at_stop: list[Callable[[], None]] = []
