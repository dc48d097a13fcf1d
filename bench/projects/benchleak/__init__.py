"""The demo project plus `/leak`, a view that keeps memory on purpose, for the `max_worker_memory` runs."""
